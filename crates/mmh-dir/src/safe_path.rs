//! Checks that keep `mmh unfold ARCHIVE -o DIR` inside DIR whatever the archive says.
//!
//! An archive may be hostile: its entry names are checked before anything is created
//! ("../x", "/etc/x", "C:\x" are refused, never rewritten, so that what is unfolded is
//! exactly what was named), and the directories on the way to an entry are checked not
//! to be symbolic links, which an earlier entry of the same archive could have planted
//! to redirect later writes outside the target.

use std::io;
use std::path::{Component, Path, PathBuf};

use crate::{Error, Result};

/// Checks an entry name from an archive and returns the relative path to create under
/// the target directory.
///
/// Names are '/'-separated and relative. Refused, with [`Error::UnsafePath`]: empty
/// names, NUL bytes, absolute paths (leading '/'), backslashes (Windows separators, UNC
/// prefixes), a Windows drive prefix ("C:"), and any component that is empty ("a//b",
/// "a/"), "." or "..".
pub fn relative_entry_path(name: &str) -> Result<PathBuf> {
    let refuse = |reason| Error::UnsafePath {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("empty name"));
    }
    if name.contains('\0') {
        return Err(refuse("it contains a NUL byte"));
    }
    if name.starts_with('/') {
        return Err(refuse("it is an absolute path"));
    }
    if name.contains('\\') {
        return Err(refuse("it contains a backslash"));
    }
    let bytes = name.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(refuse("it starts with a drive prefix"));
    }
    let mut path = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" => return Err(refuse("it has an empty path component")),
            "." => return Err(refuse("it has a '.' component")),
            ".." => return Err(refuse("it has a '..' component")),
            _ => path.push(part),
        }
    }
    // Whatever else the platform reads as special (a prefix, a root) must not get
    // through the checks above unnoticed.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(refuse("it is not a plain relative path"));
    }
    Ok(path)
}

/// Makes sure that no existing ancestor of `relative` inside `root` (`root/a`,
/// `root/a/b`, …, not the final component) is a symbolic link or a non-directory, so
/// that creating `root/relative` can neither escape `root` through a link (planted by
/// an earlier entry of the same unfold, or already present) nor write through one.
///
/// A missing ancestor is fine: the caller creates it as a directory. `name` is the
/// entry's name for [`Error::UnsafePath`].
pub fn check_no_symlink_ancestors(root: &Path, relative: &Path, name: &str) -> Result<()> {
    let Some(parent) = relative.parent() else {
        return Ok(());
    };
    let mut current = root.to_path_buf();
    for component in parent.components() {
        current.push(component);
        let meta = match current.symlink_metadata() {
            Ok(meta) => meta,
            // Nothing deeper exists either.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("cannot inspect", Some(&current))(e)),
        };
        let reason = if meta.file_type().is_symlink() {
            "its parent directory is a symbolic link"
        } else if !meta.is_dir() {
            "its parent is not a directory"
        } else {
            continue;
        };
        return Err(Error::UnsafePath {
            name: name.to_owned(),
            reason,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn refuses_unsafe_names() {
        let cases = [
            ("", "empty name"),
            ("a\0b", "it contains a NUL byte"),
            ("/etc/passwd", "it is an absolute path"),
            ("/", "it is an absolute path"),
            ("//server/share/x", "it is an absolute path"),
            ("a\\b", "it contains a backslash"),
            ("\\\\server\\share\\x", "it contains a backslash"),
            ("..\\x", "it contains a backslash"),
            ("C:", "it starts with a drive prefix"),
            ("c:/x", "it starts with a drive prefix"),
            ("C:x", "it starts with a drive prefix"),
            ("a//b", "it has an empty path component"),
            ("a/", "it has an empty path component"),
            (".", "it has a '.' component"),
            ("./a", "it has a '.' component"),
            ("a/./b", "it has a '.' component"),
            ("..", "it has a '..' component"),
            ("../x", "it has a '..' component"),
            ("a/../../x", "it has a '..' component"),
            ("a/..", "it has a '..' component"),
        ];
        for (name, expected) in cases {
            match relative_entry_path(name) {
                Err(Error::UnsafePath { name: n, reason }) => {
                    assert_eq!((n.as_str(), reason), (name, expected), "for {name:?}");
                }
                other => panic!("{name:?} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn accepts_plain_relative_names() {
        let cases = [
            ("a", &["a"][..]),
            ("a/b.c", &["a", "b.c"]),
            ("..a", &["..a"]),
            ("a..b", &["a..b"]),
            ("a/...", &["a", "..."]),
            ("dir/.hidden", &["dir", ".hidden"]),
            ("sp ace/ü", &["sp ace", "ü"]),
        ];
        for (name, parts) in cases {
            let expected: PathBuf = parts.iter().collect();
            assert_eq!(relative_entry_path(name).unwrap(), expected, "for {name:?}");
        }
    }

    fn refused_reason(root: &Path, relative: &str) -> Option<&'static str> {
        match check_no_symlink_ancestors(root, Path::new(relative), relative) {
            Ok(()) => None,
            Err(Error::UnsafePath { name, reason }) => {
                assert_eq!(name, relative);
                Some(reason)
            }
            Err(e) => panic!("unexpected error for {relative:?}: {e}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn refuses_symlink_ancestor() {
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("a")).unwrap();
        assert_eq!(
            refused_reason(root.path(), "a/x"),
            Some("its parent directory is a symbolic link")
        );
        assert_eq!(
            refused_reason(root.path(), "a/deeper/x"),
            Some("its parent directory is a symbolic link")
        );
        // The link itself as the final component is the caller's business.
        assert_eq!(refused_reason(root.path(), "a"), None);
    }

    #[test]
    fn refuses_file_ancestor() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("a"), b"").unwrap();
        assert_eq!(
            refused_reason(root.path(), "a/x"),
            Some("its parent is not a directory")
        );
    }

    #[test]
    fn accepts_real_and_missing_directories() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("a/b")).unwrap();
        for relative in ["x", "a/x", "a/b/x", "a/new/x", "new/deeper/x"] {
            assert_eq!(
                refused_reason(root.path(), relative),
                None,
                "for {relative:?}"
            );
        }
    }
}
