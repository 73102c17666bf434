//! Who could replace the callout DLL. A callout DLL is a known way to keep code running on a DHCP
//! server: whoever can write the file, or rename entries in any folder above it, decides what
//! calloutd runs next time. This module finds such writers (anyone but the user calloutd runs as,
//! and root) and hashes the file that is loaded.
//!
//! Checked, for the file and every folder above it (on the path as given and on the path with
//! symbolic links resolved): the owner must be calloutd's user or root, and neither the group nor
//! others may have the write bit. A folder with the sticky bit (like `/tmp`) is fine despite its
//! write bits when the entry below it is owned by calloutd's user or root (others cannot rename or
//! remove it). POSIX ACL grants show through the group bits (the ACL mask).
//!
//! On Windows, who can write a file is in its ACL, which this check does not read: every DLL is
//! reported unchecked (so `--strict-dll-permissions` refuses to load any); its hash is still taken.

#[cfg(unix)]
use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read};
#[cfg(unix)]
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

/// A file or folder on the way to the DLL that someone other than calloutd's user or root can
/// write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionWarning {
    /// The file or folder.
    pub path: PathBuf,
    /// Who can write it, one phrase each (`user alice (uid 1000) owns it`, `group staff (gid 50)
    /// can write it`, `every user can write it`).
    pub writers: Vec<String>,
}

impl fmt::Display for PermissionWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} can be changed by others than calloutd's user and root: {}",
            self.path.display(),
            self.writers.join("; ")
        )
    }
}

/// What the permission check found for one DLL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DllTrust {
    /// Files and folders others can write.
    pub warnings: Vec<PermissionWarning>,
    /// Why the check could not be made (a bare name found through the library search path, an
    /// unreadable folder); `None` when it was made.
    pub unchecked: Option<String>,
}

impl DllTrust {
    /// Whether nothing was found and the check was complete.
    pub fn is_clean(&self) -> bool {
        self.warnings.is_empty() && self.unchecked.is_none()
    }

    /// Every finding as one line each (for logs and the load report).
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.warnings.iter().map(|w| w.to_string()).collect();
        lines.extend(self.unchecked.iter().cloned());
        lines
    }
}

#[cfg(unix)]
/// The identity whose writes are trusted besides root's: the effective user.
fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(unix)]
fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("user {} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

#[cfg(unix)]
fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => format!("group {} (gid {gid})", group.name),
        _ => format!("gid {gid}"),
    }
}

#[cfg(unix)]
/// Checks the DLL at `path` (as it will be handed to the loader) and every folder above it. A file
/// that does not exist is not checked (loading it fails anyway).
pub fn check_dll(path: &Path) -> DllTrust {
    check_dll_as(path, own_uid())
}

#[cfg(unix)]
fn check_dll_as(path: &Path, uid: u32) -> DllTrust {
    let mut trust = DllTrust::default();
    if path.components().count() == 1 && path.is_relative() {
        trust.unchecked = Some(format!(
            "{}: found through the library search path, so who can write it was not checked \
             (give a path)",
            path.display()
        ));
        return trust;
    }
    let absolute = match std::path::absolute(path) {
        Ok(p) => p,
        Err(e) => {
            trust.unchecked = Some(format!(
                "{}: cannot check who can write it: {e}",
                path.display()
            ));
            return trust;
        }
    };
    let Ok(resolved) = std::fs::canonicalize(&absolute) else {
        return trust;
    };
    let mut seen = BTreeSet::new();
    for chain in [&resolved, &absolute] {
        if let Err(e) = check_chain(chain, uid, &mut seen, &mut trust.warnings) {
            trust.unchecked = Some(format!(
                "{}: cannot check who can write it: {e}",
                path.display()
            ));
        }
    }
    trust
}

#[cfg(unix)]
/// Checks `file` and its ancestors, skipping paths already in `seen`.
fn check_chain(
    file: &Path,
    uid: u32,
    seen: &mut BTreeSet<PathBuf>,
    warnings: &mut Vec<PermissionWarning>,
) -> io::Result<()> {
    let mut child: Option<&Path> = None;
    for item in file.ancestors() {
        if item.as_os_str().is_empty() {
            break;
        }
        let meta = std::fs::metadata(item)?;
        // With the sticky bit, only an entry's owner (or the folder's) may rename or remove it.
        let sticky_protects = child.is_some_and(|c| {
            meta.permissions().mode() & 0o1000 != 0
                && std::fs::symlink_metadata(c).is_ok_and(|m| m.uid() == uid || m.uid() == 0)
        });
        if seen.insert(item.to_path_buf()) {
            let writers = writers(
                meta.uid(),
                meta.gid(),
                meta.permissions().mode(),
                uid,
                sticky_protects,
            );
            if !writers.is_empty() {
                warnings.push(PermissionWarning {
                    path: item.to_path_buf(),
                    writers,
                });
            }
        }
        child = Some(item);
    }
    Ok(())
}

#[cfg(unix)]
/// Who besides `uid` and root can write an item with this owner, group and mode.
fn writers(owner: u32, gid: u32, mode: u32, uid: u32, sticky_protects: bool) -> Vec<String> {
    let mut who = Vec::new();
    if owner != uid && owner != 0 {
        who.push(format!("{} owns it", user_name(owner)));
    }
    if !sticky_protects {
        if mode & 0o020 != 0 {
            who.push(format!("{} can write it", group_name(gid)));
        }
        if mode & 0o002 != 0 {
            who.push("every user can write it".to_string());
        }
    }
    who
}

/// The SHA-256 of the file at `path`, lower-case hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Windows: the ACL is not read, so the check is never made (see the module doc).
#[cfg(windows)]
pub fn check_dll(path: &Path) -> DllTrust {
    DllTrust {
        warnings: Vec::new(),
        unchecked: Some(format!(
            "{}: who can write it was not checked (Windows keeps that in the file's ACL, which \
             calloutd does not read)",
            path.display()
        )),
    }
}

// Unix only: the tests set mode bits.
#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::fs;

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn group_and_world_writable_folders_and_files_are_named_with_who_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("callouts");
        fs::create_dir(&sub).unwrap();
        let dll = sub.join("x.so");
        fs::write(&dll, b"not a library").unwrap();
        chmod(dir.path(), 0o700);
        chmod(&sub, 0o755);
        chmod(&dll, 0o644);
        let me = own_uid();
        let clean = check_dll_as(&dll, me);
        assert!(clean.is_clean(), "{:?}", clean.lines());

        chmod(&sub, 0o777);
        let open = check_dll_as(&dll, me);
        assert_eq!(open.warnings.len(), 1, "{:?}", open.lines());
        assert_eq!(open.warnings[0].path, sub);
        assert!(open.warnings[0]
            .writers
            .iter()
            .any(|w| w == "every user can write it"));
        assert!(open.warnings[0]
            .writers
            .iter()
            .any(|w| w.starts_with("group ") && w.ends_with("can write it")));

        // A sticky folder protects what its trusted owner put in it.
        chmod(&sub, 0o1777);
        assert!(check_dll_as(&dll, me).is_clean());

        chmod(&sub, 0o755);
        chmod(&dll, 0o664);
        let group = check_dll_as(&dll, me);
        assert_eq!(group.warnings.len(), 1);
        assert_eq!(group.warnings[0].path, dll);
        assert!(group.lines()[0].contains("can write it"));
    }

    #[test]
    fn an_owner_other_than_us_or_root_is_a_writer() {
        // As another user (uid 4242 here), our own files are someone else's.
        let dir = tempfile::tempdir().unwrap();
        let dll = dir.path().join("x.so");
        fs::write(&dll, b"x").unwrap();
        let me = own_uid();
        let other = if me == 4242 { 4243 } else { 4242 };
        let found = check_dll_as(&dll, other);
        if me == 0 {
            // Root owns everything here: trusted whoever runs.
            assert!(found.warnings.is_empty(), "{:?}", found.lines());
        } else {
            assert!(found
                .warnings
                .iter()
                .any(|w| w.writers.iter().any(|x| x.contains(&format!("uid {me}")))));
        }
        assert_eq!(
            writers(1000, 0, 0o644, 0, false),
            vec![format!("{} owns it", user_name(1000))]
        );
        assert!(writers(0, 0, 0o644, 4242, false).is_empty());
    }

    #[test]
    fn bare_names_are_not_checked_and_missing_files_are_left_to_the_loader() {
        let bare = check_dll_as(Path::new("libm.so.6"), own_uid());
        assert!(bare
            .unchecked
            .as_deref()
            .unwrap()
            .contains("library search path"));
        assert!(check_dll_as(Path::new("/nonexistent/x.so"), own_uid()).is_clean());
    }

    #[test]
    fn symlinked_folders_are_checked_on_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        chmod(dir.path(), 0o700);
        let real = dir.path().join("real");
        let open = dir.path().join("open");
        fs::create_dir(&real).unwrap();
        fs::create_dir(&open).unwrap();
        chmod(&real, 0o755);
        chmod(&open, 0o777);
        fs::write(real.join("x.so"), b"x").unwrap();
        chmod(&real.join("x.so"), 0o644);
        std::os::unix::fs::symlink(&real, open.join("link")).unwrap();
        let found = check_dll_as(&open.join("link").join("x.so"), own_uid());
        assert!(
            found.warnings.iter().any(|w| w.path == open),
            "{:?}",
            found.lines()
        );
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
