//! Placeholder replaced by the bench task's author.
pub fn run(_args: Vec<String>) -> anyhow::Result<()> {
    anyhow::bail!("bench: being written")
}
