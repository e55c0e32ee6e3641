//! The daemon's own files and directories, private to its user whatever the umask.
//!
//! Everything the daemon and its CLI create holds members' data or derives from it
//! (the database and its `-wal`/`-shm`/`-journal` siblings, plugin copies, the files a
//! sandboxed plugin may write): directories are made 0700 and files 0600. [`restrict_umask`]
//! sets the process's mask to 0077 at start, so what SQLite or a plugin creates by
//! itself is private too; the helpers here give explicit modes as well, so that an
//! embedding process with a wider umask gets the same. The socket is the exception:
//! its mode is `daemon.socket_mode` ([`crate::server::bind`]).
//!
//! Files that exist already are left as they are; [`loose_mode`] says which of them
//! others can read, for `flaskbbd check` and the daemon's start to warn about.

use std::{
    io,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::Path,
};

/// The mode of the directories the daemon creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// The mode of the files the daemon creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Sets the process's file-creation mask to 0077: files and directories created by
/// anyone in this process (SQLite, a plugin) get no permission for group or others.
pub(crate) fn restrict_umask() {
    // SAFETY: umask only sets the process's file-creation mask; it touches no memory
    // and cannot fail.
    unsafe { libc::umask(0o077) };
}

/// Creates `dir` and its missing parents with exactly `mode` (0700 for the daemon's
/// own), whatever the umask. Directories that exist are not changed.
pub(crate) fn create_dir_all(dir: &Path, mode: u32) -> io::Result<()> {
    let missing: Vec<&Path> = dir.ancestors().take_while(|a| !a.exists()).collect();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    // The umask may have taken bits `mode` grants (the socket directory's search
    // permission for the socket's group).
    for made in missing {
        std::fs::set_permissions(made, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents 0700.
pub(crate) fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    create_dir_all(dir, DIR_MODE)
}

/// Creates the empty file `path` 0600 unless it exists (an existing one is not
/// changed).
pub(crate) fn create_private_file(path: &Path) -> io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
        .map(drop)
}

/// Writes `bytes` to a new file `path`, 0600, replacing any file there.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(FILE_MODE)
        .open(path)?
        .write_all(bytes)
}

/// When `path` exists and grants any of the permission bits in `forbidden` (0o077:
/// group and others; 0o007: others), a warning that says so and how to fix it.
pub(crate) fn loose_mode(path: &Path, forbidden: u32, what: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    let tight = mode & !forbidden;
    (mode & forbidden != 0).then(|| {
        format!(
            "{what} {} is mode {mode:04o}: other local users can read it; run `chmod {tight:04o} {}`",
            path.display(),
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_files_and_directories_are_private_whatever_the_umask() {
        let dir = std::env::temp_dir().join(format!("flaskbbd-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // SAFETY: as in restrict_umask; a wide mask, as a shell's 022 or 000.
        let previous = unsafe { libc::umask(0) };
        let nested = dir.join("a/b");
        create_private_dir_all(&nested).unwrap();
        create_private_file(&nested.join("f")).unwrap();
        write_private(&nested.join("g"), b"x").unwrap();
        // SAFETY: restoring the mask.
        unsafe { libc::umask(previous) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("a")), 0o700);
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&nested.join("f")), 0o600);
        assert_eq!(mode(&nested.join("g")), 0o600);
        assert!(loose_mode(&nested.join("f"), 0o077, "file").is_none());
        std::fs::set_permissions(nested.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = loose_mode(&nested.join("f"), 0o077, "the database").unwrap();
        assert!(
            warning.contains("mode 0644") && warning.contains("chmod 0600"),
            "{warning}"
        );
        assert!(loose_mode(&nested.join("f"), 0o007, "the database").is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
