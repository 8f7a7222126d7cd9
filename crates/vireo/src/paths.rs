//! Turning the relative paths a user types into the absolute paths the daemon needs.

use std::path::{Component, Path, PathBuf};

use anyhow::Context;

pub fn current_dir() -> anyhow::Result<PathBuf> {
    std::env::current_dir().context("cannot determine the current directory")
}

/// `path` made absolute against `cwd`, without `.` components. `..` is kept: resolving it
/// lexically would be wrong across symlinks.
pub fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    joined.components().filter(|c| *c != Component::CurDir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_become_absolute() {
        let cwd = Path::new("/home/u/vms");
        assert_eq!(absolute(cwd, Path::new("./bzImage")), PathBuf::from("/home/u/vms/bzImage"));
        assert_eq!(absolute(cwd, Path::new("../k/bzImage")), PathBuf::from("/home/u/vms/../k/bzImage"));
        assert_eq!(absolute(cwd, Path::new("/boot/./vmlinuz")), PathBuf::from("/boot/vmlinuz"));
        assert_eq!(absolute(cwd, Path::new("disk.img")), PathBuf::from("/home/u/vms/disk.img"));
    }
}
