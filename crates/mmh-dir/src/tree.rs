//! Folding a directory tree into one archive, and unfolding an archive of many entries
//! into a directory without ever writing outside it.

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use mmh_format::{Entry, EntryKind, ReadAt};
use mmh_verify::Chain;

use crate::fold::{in_pool, system_time};
use crate::output::Overwrite;
use crate::pipeline::{Content, Repeats, empty_file, fold_entries};
use crate::safe_path::{check_no_symlink_ancestors, relative_entry_path};
use crate::unfold::{unfold_files, unfold_to_path};
use crate::walk::{Source, WalkOptions, walk_tree};
use crate::{Error, FoldOptions, FoldSummary, Observer, Result};

/// Folds the tree under `root` (names relative to it) into `output`: directories,
/// files, symbolic links and hard links with their permissions and mtimes, in a
/// deterministic order. A chunk that occurs more than once, within or across files, is
/// stored once. What cannot be archived (sockets, devices) is left out with a warning
/// in [`FoldSummary::warnings`].
pub fn fold_tree(
    root: &Path,
    walk: &WalkOptions,
    output: impl Write + Send,
    options: &FoldOptions,
    observer: &dyn Observer,
) -> Result<FoldSummary> {
    options.validate()?;
    let walked = walk_tree(root, walk)?;
    let mut entries = Vec::with_capacity(walked.entries.len());
    let mut contents: Vec<Content<'_>> = Vec::new();
    for (number, walked) in walked.entries.into_iter().enumerate() {
        let kind = match walked.source {
            Source::File { path, .. } => {
                contents.push((
                    number,
                    Some(path.clone()),
                    Box::new(move || {
                        let file =
                            File::open(&path).map_err(Error::io("cannot open", Some(&path)))?;
                        Ok(Box::new(file) as _)
                    }),
                ));
                empty_file()
            }
            Source::Directory => EntryKind::Directory,
            Source::Symlink { target } => EntryKind::Symlink { target },
            Source::HardLink { target } => EntryKind::HardLink { target },
        };
        entries.push(Entry {
            name: walked.name,
            mode: walked.mode,
            mtime: walked.mtime,
            kind,
        });
    }
    let mut summary = in_pool(options.threads, || {
        fold_entries(
            entries,
            contents,
            Repeats::Reference,
            output,
            options,
            observer,
        )
    })?;
    summary.warnings = walked.warnings;
    Ok(summary)
}

/// Files up to this size are unfolded together, one after the other from one pass over
/// their chunks; larger ones one by one, each decoded on every core.
const SMALL_FILE: u64 = 1 << 20;

/// At most this many small files, or this many bytes of them, are unfolded in one pass
/// over their chunks.
const SMALL_FILES_PER_PASS: usize = 16 * 1024;
const SMALL_FILES_PASS_BYTES: u64 = 256 << 20;

/// What [`unfold_tree`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeSummary {
    /// Entries created.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// True when `name` is one of `paths` or lies under one (any name when `paths` is empty).
fn selected(name: &str, paths: &[String]) -> bool {
    paths.is_empty() || paths.iter().any(|p| under(name, p))
}

/// True when `name` is `path` or lies under it.
fn under(name: &str, path: &str) -> bool {
    let path = path.trim_end_matches('/');
    name == path
        || name
            .strip_prefix(path)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// Unfolds the archive's entries (all, or those named by `paths` and what lies under
/// them) into the directory `dest`, created if missing.
///
/// Every name is checked before anything is created for it: absolute paths, `..`
/// components and paths that would pass through a symbolic link (one made earlier in
/// this unfold, or already in `dest`) are refused, so nothing is written outside `dest`
/// and no link in it is followed. Files are verified and renamed into place one by one;
/// an existing file or link is replaced only with [`Overwrite::Replace`].
pub fn unfold_tree<R: ReadAt>(
    archive: &Chain<R>,
    dest: &Path,
    paths: &[String],
    overwrite: Overwrite,
    observer: &dyn Observer,
) -> Result<TreeSummary> {
    // A path that names nothing is a mistake (a typo, the wrong archive): say so before
    // anything is created, as `tar -x` does.
    if let Some(missing) = paths
        .iter()
        .find(|p| !archive.index().entries.iter().any(|e| under(&e.name, p)))
    {
        return Err(Error::NoSuchEntry {
            name: missing.clone(),
        });
    }
    std::fs::create_dir_all(dest).map_err(Error::io("cannot create", Some(dest)))?;
    // Absolute, so that temporary files beside each output need no lookup of the working
    // directory (one system call per file in a tree of small files).
    let dest = &std::path::absolute(dest).map_err(Error::io("cannot resolve", Some(dest)))?;
    let entries = &archive.index().entries;
    let mut summary = TreeSummary::default();
    let mut made_files: HashSet<&str> = HashSet::new();
    let mut directories: Vec<(PathBuf, &Entry)> = Vec::new();
    // Consecutive small files are written in one pass over their chunks.
    let mut files: Vec<(PathBuf, &Entry)> = Vec::new();
    let write_files = |files: &mut Vec<(PathBuf, &Entry)>| -> Result<u64> {
        let bytes = unfold_files(archive, files, overwrite, observer)?;
        files.clear();
        Ok(bytes)
    };
    let mut checked_parent: Option<PathBuf> = None;
    let mut pass_bytes = 0u64;
    for entry in entries.iter().filter(|e| selected(&e.name, paths)) {
        let relative = relative_entry_path(&entry.name)?;
        let small_file = matches!(entry.kind, EntryKind::File { size, .. } if size <= SMALL_FILE);
        // Links wait for the files before them (a link made while their paths are in
        // flight could redirect them), and so do large files (written on every core).
        // Directories do not: the next directory's files often share the last frame.
        if !small_file && !matches!(entry.kind, EntryKind::Directory) {
            summary.bytes += write_files(&mut files)?;
        }
        let path = dest.join(&relative);
        // Files in a row in one directory need its ancestors checked and made once: only
        // entries that are not small files (written first) can create links.
        if !small_file || checked_parent.as_deref() != relative.parent() {
            check_no_symlink_ancestors(dest, &relative, &entry.name)?;
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(Error::io("cannot create", Some(parent)))?;
            }
            checked_parent = small_file
                .then(|| relative.parent().map(Path::to_path_buf))
                .flatten();
        }
        match &entry.kind {
            EntryKind::Directory => {
                let existing = path.symlink_metadata();
                if !existing.as_ref().is_ok_and(|m| m.is_dir()) {
                    if existing.is_ok() {
                        return Err(Error::OutputExists { path });
                    }
                    std::fs::create_dir(&path).map_err(Error::io("cannot create", Some(&path)))?;
                }
                directories.push((path, entry));
            }
            EntryKind::File { size, .. } => {
                if small_file {
                    files.push((path, entry));
                    pass_bytes += size;
                    // Bounds what a pass holds for a tree of any size, while leaving it
                    // enough frames for decoding to overlap writing; a frame shared by
                    // two passes is decoded twice.
                    if files.len() == SMALL_FILES_PER_PASS || pass_bytes >= SMALL_FILES_PASS_BYTES {
                        summary.bytes += write_files(&mut files)?;
                        pass_bytes = 0;
                    }
                } else {
                    unfold_to_path(archive, entry, &path, overwrite, observer)?;
                    summary.bytes += size;
                }
                made_files.insert(&entry.name);
            }
            EntryKind::Symlink { target } => {
                make_room(&path, overwrite)?;
                symlink(target, &path)?;
            }
            EntryKind::HardLink { target } => {
                if made_files.contains(target.as_str()) {
                    make_room(&path, overwrite)?;
                    let original = dest.join(relative_entry_path(target)?);
                    std::fs::hard_link(&original, &path)
                        .map_err(Error::io("cannot create a hard link at", Some(&path)))?;
                } else {
                    // The original was not selected: give this name its own copy.
                    let original = crate::unfold::find_entry(archive.index(), target)?;
                    let copy = Entry {
                        name: entry.name.clone(),
                        ..original.clone()
                    };
                    unfold_to_path(archive, &copy, &path, overwrite, observer)?;
                }
            }
        }
        summary.entries += 1;
    }
    summary.bytes += write_files(&mut files)?;
    // Directories last, deepest first: writing their contents would move their mtimes,
    // and a read-only mode would have refused the contents.
    for (path, entry) in directories.iter().rev() {
        apply_directory_metadata(path, entry)?;
    }
    Ok(summary)
}

/// Unfolds an archive into `dest`: an archive of one file (and no `paths`, or only that
/// file's name) becomes the file `dest`; any other becomes the directory `dest`, holding
/// all entries or those under `paths` ([`unfold_tree`]).
pub fn unfold_path<R: ReadAt>(
    archive: &Chain<R>,
    dest: &Path,
    paths: &[String],
    overwrite: Overwrite,
    observer: &dyn Observer,
) -> Result<TreeSummary> {
    if let Ok(entry) = crate::single_file(archive.index())
        && paths.iter().all(|p| *p == entry.name)
    {
        let bytes = unfold_to_path(archive, entry, dest, overwrite, observer)?;
        return Ok(TreeSummary { entries: 1, bytes });
    }
    unfold_tree(archive, dest, paths, overwrite, observer)
}

/// Clears `path` for a new link when replacing is allowed, else refuses an existing one.
fn make_room(path: &Path, overwrite: Overwrite) -> Result<()> {
    if path.symlink_metadata().is_ok() {
        if overwrite == Overwrite::Refuse {
            return Err(Error::OutputExists {
                path: path.to_path_buf(),
            });
        }
        std::fs::remove_file(path).map_err(Error::io("cannot replace", Some(path)))?;
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: &str, path: &Path) -> Result<()> {
    std::os::unix::fs::symlink(target, path)
        .map_err(Error::io("cannot create a symbolic link at", Some(path)))
}

#[cfg(not(unix))]
fn symlink(_target: &str, path: &Path) -> Result<()> {
    Err(Error::InvalidOption(format!(
        "{}: symbolic links are unfolded on Unix only",
        path.display()
    )))
}

fn apply_directory_metadata(path: &Path, entry: &Entry) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode & 0o7777))
            .map_err(Error::io("cannot set permissions of", Some(path)))?;
    }
    if let Some(time) = system_time(entry.mtime) {
        File::open(path)
            .and_then(|dir| dir.set_modified(time))
            .map_err(Error::io("cannot set the modification time of", Some(path)))?;
    }
    Ok(())
}
