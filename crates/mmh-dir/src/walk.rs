//! Walking a directory tree for `mmh fold DIR`: what to store, under which names, and
//! in which order.
//!
//! The order is plain byte order of the '/'-joined names, so that the same tree gives
//! the same archive on every run and machine, and every directory comes before its
//! contents (a name sorts before every name it prefixes). walkdir's own order (a
//! directory's contents right after it) differs: "a/b" would come before "a.b", as
//! '.' (0x2E) sorts below '/' (0x2F); so entries are sorted once collected.
//!
//! Nothing that cannot be recreated faithfully is stored silently: sockets, FIFOs,
//! devices and names that are not UTF-8 are left out with a warning.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use mmh_format::Timestamp;
use walkdir::WalkDir;

use crate::fold::timestamp;
use crate::{Error, Result};

/// How a tree is walked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkOptions {
    /// Follow symbolic links (store what they point to) instead of storing them as
    /// links.
    pub follow_symlinks: bool,
    /// Report unreadable files and directories as warnings and leave them out, instead
    /// of failing.
    pub skip_unreadable: bool,
    /// Record every mtime as 0, so that the same tree always gives the same archive
    /// bytes.
    pub deterministic: bool,
}

/// What a walked entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A regular file to read at `path`, `size` bytes when walked.
    File {
        /// Where to read it.
        path: PathBuf,
        /// Its size when walked.
        size: u64,
    },
    /// A directory.
    Directory,
    /// A symbolic link, stored as a link.
    Symlink {
        /// The link's target as written (not resolved).
        target: String,
    },
    /// A further name of a file already walked (same device and inode).
    HardLink {
        /// The name of the earlier entry, in walk order.
        target: String,
    },
}

/// One entry of a walked tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkedEntry {
    /// The path relative to the root, '/'-separated, e.g. "sub/file.bin".
    pub name: String,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Modification time (zero when walking deterministically).
    pub mtime: Timestamp,
    /// What the entry holds.
    pub source: Source,
}

/// A walked tree: its entries in order, and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// Entries sorted by the bytes of their names.
    pub entries: Vec<WalkedEntry>,
    /// One line per thing left out, naming its path and why.
    pub warnings: Vec<String>,
}

/// An entry before hard links are resolved, which needs the final order.
struct Found {
    entry: WalkedEntry,
    /// Where it was found, to match a later error reading this directory.
    path: PathBuf,
    /// Device and inode of a file with more than one name.
    inode: Option<(u64, u64)>,
}

/// Walks the tree under `root` (root itself not included), in the order described in
/// the module docs: sorted by the bytes of the '/'-joined names.
///
/// Symbolic links are stored as links unless [`WalkOptions::follow_symlinks`]; then a
/// link to a directory is walked into, a link back to one of its own ancestors is
/// [`Error::SymlinkLoop`], and a dangling link is kept as a link with a warning.
/// Sockets, FIFOs, devices and names or link targets that are not UTF-8 are left out
/// with a warning. A file or directory that cannot be read is [`Error::Io`], or a
/// warning when [`WalkOptions::skip_unreadable`]. The first name of a file with several
/// (same device and inode, Unix only) is a [`Source::File`], later ones
/// [`Source::HardLink`]s to it.
pub fn walk_tree(root: &Path, options: &WalkOptions) -> Result<Walk> {
    let meta = root
        .metadata()
        .map_err(Error::io("cannot read metadata of", Some(root)))?;
    if !meta.is_dir() {
        return Err(Error::InvalidOption(format!(
            "{} is not a directory",
            root.display()
        )));
    }
    let mut found: Vec<Found> = Vec::new();
    let mut warnings = Vec::new();
    let mut walker = WalkDir::new(root)
        .min_depth(1)
        .follow_links(options.follow_symlinks)
        .sort_by_file_name()
        .into_iter();
    while let Some(next) = walker.next() {
        let dent = match next {
            Ok(dent) => dent,
            Err(err) => {
                if let Some(ancestor) = err.loop_ancestor() {
                    return Err(Error::SymlinkLoop {
                        path: err.path().map(Path::to_path_buf).unwrap_or_default(),
                        ancestor: ancestor.to_path_buf(),
                    });
                }
                let path = err.path().map(Path::to_path_buf);
                if options.follow_symlinks
                    && let Some(link) = path.as_deref().filter(|p| is_symlink(p))
                {
                    // Nothing to follow: keep what is there.
                    let Some(name) = entry_name(root, link, &mut warnings) else {
                        continue;
                    };
                    let meta = link
                        .symlink_metadata()
                        .map_err(Error::io("cannot read metadata of", Some(link)))?;
                    if let Some(entry) = symlink_entry(name, link, &meta, options, &mut warnings)? {
                        warnings.push(format!(
                            "{}: dangling symbolic link kept as a link",
                            link.display()
                        ));
                        found.push(Found {
                            entry,
                            path: link.to_path_buf(),
                            inode: None,
                        });
                    }
                    continue;
                }
                let path = path.unwrap_or_else(|| root.to_path_buf());
                skip_or_fail(options, "cannot read", &path, err.into(), &mut warnings)?;
                // An unreadable directory is reported right after its own entry: leave
                // it out altogether rather than store it as empty.
                if found.last().is_some_and(|f| f.path == path) {
                    found.pop();
                }
                continue;
            }
        };
        let path = dent.path();
        let Some(name) = entry_name(root, path, &mut warnings) else {
            if dent.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        };
        let meta = match dent.metadata() {
            Ok(meta) => meta,
            Err(err) => {
                let context = "cannot read metadata of";
                skip_or_fail(options, context, path, err.into(), &mut warnings)?;
                continue;
            }
        };
        let file_type = dent.file_type();
        let (source, inode) = if file_type.is_dir() {
            (Source::Directory, None)
        } else if file_type.is_symlink() {
            if let Some(entry) = symlink_entry(name, path, &meta, options, &mut warnings)? {
                found.push(Found {
                    entry,
                    path: path.to_path_buf(),
                    inode: None,
                });
            }
            continue;
        } else if file_type.is_file() {
            // Fail now, not halfway through writing the archive.
            if let Err(source) = File::open(path) {
                skip_or_fail(options, "cannot open", path, source, &mut warnings)?;
                continue;
            }
            let source = Source::File {
                path: path.to_path_buf(),
                size: meta.len(),
            };
            (source, inode_of(&meta))
        } else {
            warnings.push(format!(
                "{}: left out, a {} cannot be archived",
                path.display(),
                special_kind(&meta)
            ));
            continue;
        };
        found.push(Found {
            entry: WalkedEntry {
                name,
                mode: mode_of(&meta),
                mtime: mtime_of(&meta, options),
                source,
            },
            path: path.to_path_buf(),
            inode,
        });
    }
    found.sort_unstable_by(|a, b| a.entry.name.cmp(&b.entry.name));
    let mut first_names: HashMap<(u64, u64), String> = HashMap::new();
    let entries = found
        .into_iter()
        .map(|f| {
            let mut entry = f.entry;
            if let Some(inode) = f.inode {
                if let Some(first) = first_names.get(&inode) {
                    entry.source = Source::HardLink {
                        target: first.clone(),
                    };
                } else {
                    first_names.insert(inode, entry.name.clone());
                }
            }
            entry
        })
        .collect();
    Ok(Walk { entries, warnings })
}

/// Fails with what could not be read, or, when [`WalkOptions::skip_unreadable`], notes
/// it as left out.
fn skip_or_fail(
    options: &WalkOptions,
    context: &'static str,
    path: &Path,
    source: io::Error,
    warnings: &mut Vec<String>,
) -> Result<()> {
    if !options.skip_unreadable {
        return Err(Error::Io {
            context,
            path: Some(path.to_path_buf()),
            source,
        });
    }
    warnings.push(format!(
        "{}: left out, {context} it: {source}",
        path.display()
    ));
    Ok(())
}

fn is_symlink(path: &Path) -> bool {
    path.symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// The '/'-joined name of `path` under `root`, or `None` (with a warning) when it is
/// not UTF-8: archive names are.
fn entry_name(root: &Path, path: &Path, warnings: &mut Vec<String>) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = relative.iter().map(|c| c.to_str()).collect();
    if parts.is_none() {
        warnings.push(format!(
            "{}: left out, its name is not valid UTF-8",
            path.display()
        ));
    }
    Some(parts?.join("/"))
}

fn symlink_entry(
    name: String,
    path: &Path,
    meta: &Metadata,
    options: &WalkOptions,
    warnings: &mut Vec<String>,
) -> Result<Option<WalkedEntry>> {
    let target = std::fs::read_link(path).map_err(Error::io("cannot read the link", Some(path)))?;
    let Some(target) = target.to_str() else {
        warnings.push(format!(
            "{}: left out, its link target is not valid UTF-8",
            path.display()
        ));
        return Ok(None);
    };
    Ok(Some(WalkedEntry {
        name,
        mode: mode_of(meta),
        mtime: mtime_of(meta, options),
        source: Source::Symlink {
            target: target.to_owned(),
        },
    }))
}

fn mtime_of(meta: &Metadata, options: &WalkOptions) -> Timestamp {
    if options.deterministic {
        Timestamp::default()
    } else {
        meta.modified().map(timestamp).unwrap_or_default()
    }
}

#[cfg(unix)]
fn mode_of(meta: &Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &Metadata) -> u32 {
    if meta.is_dir() { 0o755 } else { 0o644 }
}

#[cfg(unix)]
fn inode_of(meta: &Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    (meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn inode_of(_meta: &Metadata) -> Option<(u64, u64)> {
    None
}

#[cfg(unix)]
fn special_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_meta: &Metadata) -> &'static str {
    "special file"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(walk: &Walk) -> Vec<&str> {
        walk.entries.iter().map(|e| e.name.as_str()).collect()
    }

    fn entry<'w>(walk: &'w Walk, name: &str) -> &'w WalkedEntry {
        walk.entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("no entry {name:?} in {:?}", names(walk)))
    }

    fn sample_tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("a/c/d")).unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        fs::write(root.join("a.b"), b"x").unwrap();
        fs::write(root.join("a/b/f"), b"yy").unwrap();
        fs::write(root.join("B"), b"").unwrap();
        fs::write(root.join("a0"), b"z").unwrap();
        dir
    }

    #[test]
    fn order_is_byte_order_of_names() {
        let dir = sample_tree();
        let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
        assert_eq!(
            names(&walk),
            [
                "B", "a", "a.b", "a/b", "a/b/f", "a/c", "a/c/d", "a0", "empty"
            ]
        );
        assert!(walk.warnings.is_empty(), "{:?}", walk.warnings);
        assert_eq!(entry(&walk, "empty").source, Source::Directory);
        assert_eq!(
            entry(&walk, "a/b/f").source,
            Source::File {
                path: dir.path().join("a/b/f"),
                size: 2
            }
        );
    }

    #[test]
    fn same_tree_walks_the_same() {
        let dir = sample_tree();
        let options = WalkOptions::default();
        assert_eq!(
            walk_tree(dir.path(), &options).unwrap(),
            walk_tree(dir.path(), &options).unwrap()
        );
    }

    #[test]
    fn deterministic_zeroes_mtimes() {
        let dir = sample_tree();
        let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
        assert!(walk.entries.iter().any(|e| e.mtime != Timestamp::default()));
        let options = WalkOptions {
            deterministic: true,
            ..Default::default()
        };
        let walk = walk_tree(dir.path(), &options).unwrap();
        assert!(walk.entries.iter().all(|e| e.mtime == Timestamp::default()));
    }

    #[test]
    fn root_must_be_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = walk_tree(&file, &WalkOptions::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidOption(_)), "{err}");
        let err = walk_tree(&dir.path().join("missing"), &WalkOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[cfg(unix)]
    mod unix {
        use super::*;
        use std::os::unix::fs::{PermissionsExt, symlink};

        #[test]
        fn mode_is_permission_bits() {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("x");
            fs::write(&file, b"").unwrap();
            fs::set_permissions(&file, fs::Permissions::from_mode(0o4751)).unwrap();
            let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
            assert_eq!(entry(&walk, "x").mode, 0o4751);
        }

        #[test]
        fn symlink_stored_as_link_or_followed() {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs::create_dir(root.join("real")).unwrap();
            fs::write(root.join("real/f"), b"abc").unwrap();
            symlink("real", root.join("link")).unwrap();
            symlink("real/f", root.join("flink")).unwrap();

            let walk = walk_tree(root, &WalkOptions::default()).unwrap();
            assert_eq!(names(&walk), ["flink", "link", "real", "real/f"]);
            assert_eq!(
                entry(&walk, "link").source,
                Source::Symlink {
                    target: "real".into()
                }
            );
            assert_eq!(
                entry(&walk, "flink").source,
                Source::Symlink {
                    target: "real/f".into()
                }
            );

            let follow = WalkOptions {
                follow_symlinks: true,
                ..Default::default()
            };
            let walk = walk_tree(root, &follow).unwrap();
            assert_eq!(names(&walk), ["flink", "link", "link/f", "real", "real/f"]);
            assert_eq!(entry(&walk, "link").source, Source::Directory);
            assert_eq!(
                entry(&walk, "link/f").source,
                Source::File {
                    path: root.join("link/f"),
                    size: 3
                }
            );
            assert!(matches!(
                entry(&walk, "flink").source,
                Source::File { size: 3, .. }
            ));
        }

        #[test]
        fn followed_loop_is_an_error() {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("d")).unwrap();
            symlink("..", dir.path().join("d/up")).unwrap();
            // Not followed, the loop is harmless.
            let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
            assert_eq!(names(&walk), ["d", "d/up"]);
            let follow = WalkOptions {
                follow_symlinks: true,
                ..Default::default()
            };
            let err = walk_tree(dir.path(), &follow).unwrap_err();
            assert!(matches!(err, Error::SymlinkLoop { .. }), "{err}");
        }

        #[test]
        fn followed_dangling_link_kept_as_link() {
            let dir = tempfile::tempdir().unwrap();
            symlink("nowhere", dir.path().join("gone")).unwrap();
            let follow = WalkOptions {
                follow_symlinks: true,
                ..Default::default()
            };
            let walk = walk_tree(dir.path(), &follow).unwrap();
            assert_eq!(
                entry(&walk, "gone").source,
                Source::Symlink {
                    target: "nowhere".into()
                }
            );
            assert_eq!(walk.warnings.len(), 1, "{:?}", walk.warnings);
        }

        #[test]
        fn hard_links_point_to_first_name() {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path();
            fs::create_dir(root.join("d")).unwrap();
            fs::write(root.join("d/z"), b"shared").unwrap();
            fs::hard_link(root.join("d/z"), root.join("a")).unwrap();
            fs::hard_link(root.join("d/z"), root.join("m")).unwrap();
            fs::write(root.join("solo"), b"solo").unwrap();
            let walk = walk_tree(root, &WalkOptions::default()).unwrap();
            assert_eq!(names(&walk), ["a", "d", "d/z", "m", "solo"]);
            assert!(matches!(
                entry(&walk, "a").source,
                Source::File { size: 6, .. }
            ));
            for name in ["d/z", "m"] {
                assert_eq!(
                    entry(&walk, name).source,
                    Source::HardLink { target: "a".into() }
                );
            }
            assert!(matches!(entry(&walk, "solo").source, Source::File { .. }));
        }

        #[test]
        fn socket_left_out_with_warning() {
            let dir = tempfile::tempdir().unwrap();
            let _listener =
                std::os::unix::net::UnixListener::bind(dir.path().join("sock")).unwrap();
            fs::write(dir.path().join("f"), b"").unwrap();
            let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
            assert_eq!(names(&walk), ["f"]);
            assert_eq!(walk.warnings.len(), 1);
            assert!(walk.warnings[0].contains("sock"), "{:?}", walk.warnings);
            assert!(walk.warnings[0].contains("socket"), "{:?}", walk.warnings);
        }

        #[test]
        fn fifo_left_out_with_warning() {
            let dir = tempfile::tempdir().unwrap();
            let fifo = dir.path().join("pipe");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if !made.is_ok_and(|s| s.success()) {
                eprintln!("mkfifo unavailable: skipping");
                return;
            }
            let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
            assert!(walk.entries.is_empty());
            assert_eq!(walk.warnings.len(), 1);
            assert!(walk.warnings[0].contains("pipe"), "{:?}", walk.warnings);
            assert!(walk.warnings[0].contains("FIFO"), "{:?}", walk.warnings);
        }

        #[test]
        fn non_utf8_name_left_out_with_warning() {
            use std::os::unix::ffi::OsStrExt;
            let dir = tempfile::tempdir().unwrap();
            let bad = std::ffi::OsStr::from_bytes(b"bad\xff");
            // Some file systems refuse such names outright: nothing to test there.
            if fs::create_dir(dir.path().join(bad)).is_err() {
                return;
            }
            fs::write(dir.path().join(bad).join("inner"), b"").unwrap();
            fs::write(dir.path().join("ok"), b"").unwrap();
            symlink(bad, dir.path().join("to_bad")).unwrap();
            let walk = walk_tree(dir.path(), &WalkOptions::default()).unwrap();
            assert_eq!(names(&walk), ["ok"]);
            assert_eq!(walk.warnings.len(), 2, "{:?}", walk.warnings);
        }

        #[test]
        fn unreadable_file_fails_or_is_skipped() {
            let dir = tempfile::tempdir().unwrap();
            let secret = dir.path().join("secret");
            fs::write(&secret, b"x").unwrap();
            fs::write(dir.path().join("open"), b"y").unwrap();
            fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
            if File::open(&secret).is_ok() {
                eprintln!("permissions do not apply (running as root?): skipping");
                return;
            }
            let err = walk_tree(dir.path(), &WalkOptions::default()).unwrap_err();
            assert!(
                matches!(&err, Error::Io { path: Some(p), .. } if p == &secret),
                "{err}"
            );
            let skip = WalkOptions {
                skip_unreadable: true,
                ..Default::default()
            };
            let walk = walk_tree(dir.path(), &skip).unwrap();
            assert_eq!(names(&walk), ["open"]);
            assert_eq!(walk.warnings.len(), 1);
            assert!(walk.warnings[0].contains("secret"), "{:?}", walk.warnings);
        }

        #[test]
        fn unreadable_directory_fails_or_is_skipped() {
            let dir = tempfile::tempdir().unwrap();
            let locked = dir.path().join("locked");
            fs::create_dir(&locked).unwrap();
            fs::write(locked.join("inner"), b"").unwrap();
            fs::write(dir.path().join("open"), b"").unwrap();
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
            let readable = fs::read_dir(&locked).is_ok();
            let result = (!readable).then(|| {
                let err = walk_tree(dir.path(), &WalkOptions::default()).unwrap_err();
                let skip = WalkOptions {
                    skip_unreadable: true,
                    ..Default::default()
                };
                (err, walk_tree(dir.path(), &skip).unwrap())
            });
            // Give the temporary directory back its permissions so that it can go.
            fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
            let Some((err, walk)) = result else {
                eprintln!("permissions do not apply (running as root?): skipping");
                return;
            };
            assert!(
                matches!(&err, Error::Io { path: Some(p), .. } if p == &locked),
                "{err}"
            );
            assert_eq!(names(&walk), ["open"]);
            assert_eq!(walk.warnings.len(), 1);
            assert!(walk.warnings[0].contains("locked"), "{:?}", walk.warnings);
        }
    }
}
