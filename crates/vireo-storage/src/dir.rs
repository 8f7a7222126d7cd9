//! `dir` pools: a directory on the host, each volume a file in it.

use std::hash::{BuildHasher, RandomState};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use nix::unistd::{AccessFlags, access};
use vireo_api::{DiskFormat, PoolType};

use crate::{PoolDriver, PoolUsage, StorageError, VolumeInfo, VolumeSource, qemu_img};

/// What marks the working directory of an unfinished create, import or clone.
const PARTIAL_MARKER: &str = ".partial-";
/// qcow2 sizes must be whole sectors, and qemu-img rounds or refuses others
/// differently per format and command: only whole sectors are accepted.
const SECTOR: u64 = 512;

/// A pool that is a directory; volume `NAME` is the file `PATH/NAME`.
#[derive(Clone, Debug)]
pub struct DirPool {
    path: PathBuf,
}

impl DirPool {
    pub fn new(path: PathBuf) -> Self {
        DirPool { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name`, refusing names that would leave the directory.
    fn checked_path(&self, name: &str) -> Result<PathBuf, StorageError> {
        check_name(name)?;
        Ok(self.volume_path(name))
    }

    /// The path of `name`, which must exist.
    async fn existing_volume(&self, name: &str) -> Result<PathBuf, StorageError> {
        let path = self.checked_path(name)?;
        match tokio::fs::symlink_metadata(&path).await {
            Ok(_) => Ok(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(StorageError::VolumeNotFound { path }),
            Err(source) => Err(StorageError::Io { action: "read", path, source }),
        }
    }
}

/// Defence in depth: callers validate names, but a name reaching here must still stay in the pool.
fn check_name(name: &str) -> Result<(), StorageError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.contains('/') {
        "must not contain '/'"
    } else if name.starts_with('.') {
        "must not start with '.'"
    } else if name.contains('\0') {
        "must not contain NUL"
    } else {
        return Ok(());
    };
    Err(StorageError::InvalidName { name: name.into(), reason })
}

fn check_size(size: u64) -> Result<(), StorageError> {
    if !size.is_multiple_of(SECTOR) {
        return Err(StorageError::InvalidSize { size });
    }
    Ok(())
}

/// What qemu-img says about the file at `file`, reported as the volume at `path`.
/// The format is given whenever it is known: probing would take a raw volume
/// whose first sector holds a qcow2 header (a guest can write one) for qcow2.
async fn info_of(file: &Path, format: Option<DiskFormat>, path: PathBuf) -> Result<VolumeInfo, StorageError> {
    let chain = qemu_img::info_chain(file, format).await?;
    VolumeInfo::from_chain(path, &chain)
}

#[async_trait]
impl PoolDriver for DirPool {
    fn pool_type(&self) -> PoolType {
        PoolType::Dir
    }

    async fn prepare(&self) -> Result<(), StorageError> {
        let unusable = |reason: String| StorageError::PoolUnusable { path: self.path.clone(), reason };
        tokio::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .await
            .map_err(|err| unusable(format!("cannot create it: {err}")))?;
        let metadata = tokio::fs::metadata(&self.path).await.map_err(|err| unusable(err.to_string()))?;
        if !metadata.is_dir() {
            return Err(unusable("not a directory".into()));
        }
        access(&self.path, AccessFlags::W_OK | AccessFlags::X_OK)
            .map_err(|errno| unusable(format!("not writable: {}", errno.desc())))
    }

    async fn usage(&self, volume_names: &[String]) -> Result<PoolUsage, StorageError> {
        let fs = nix::sys::statvfs::statvfs(&self.path).map_err(|errno| StorageError::Io {
            action: "statvfs",
            path: self.path.clone(),
            source: errno.into(),
        })?;
        let fragment = fs.fragment_size() as u64;
        let mut allocation_bytes = 0;
        for name in volume_names {
            let path = self.checked_path(name)?;
            match tokio::fs::symlink_metadata(&path).await {
                Ok(metadata) => allocation_bytes += metadata.blocks() * 512,
                // A volume the caller knows of but the directory lacks occupies nothing;
                // the pool's usage should still be reported.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    tracing::warn!(path = %path.display(), "volume file is missing");
                }
                Err(source) => return Err(StorageError::Io { action: "read", path, source }),
            }
        }
        Ok(PoolUsage {
            capacity_bytes: fs.blocks() * fragment,
            available_bytes: fs.blocks_available() * fragment,
            allocation_bytes,
        })
    }

    fn volume_path(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    async fn create_volume(&self, name: &str, size: u64, format: DiskFormat) -> Result<VolumeInfo, StorageError> {
        check_size(size)?;
        let target = self.checked_path(name)?;
        let partial = Partial::start(&self.path, name, &target).await?;
        qemu_img::create(partial.file(), format, size).await?;
        let info = info_of(partial.file(), Some(format), target.clone()).await?;
        partial.commit(&target).await?;
        Ok(info)
    }

    async fn import_volume(
        &self,
        name: &str,
        source: &Path,
        format: DiskFormat,
        progress: &(dyn Fn(f64) + Send + Sync),
    ) -> Result<VolumeInfo, StorageError> {
        let target = self.checked_path(name)?;
        let partial = Partial::start(&self.path, name, &target).await?;
        qemu_img::convert(source, None, partial.file(), format, progress).await?;
        let info = info_of(partial.file(), Some(format), target.clone()).await?;
        partial.commit(&target).await?;
        Ok(info)
    }

    async fn clone_volume(&self, name: &str, source: &VolumeSource, linked: bool) -> Result<VolumeInfo, StorageError> {
        let target = self.checked_path(name)?;
        // The overlay records its backing path: it must not depend on our working directory.
        let source_path =
            std::path::absolute(&source.path).map_err(StorageError::io("resolve", source.path.clone()))?;
        let partial = Partial::start(&self.path, name, &target).await?;
        let format = if linked {
            qemu_img::create_overlay(partial.file(), &source_path, source.format).await?;
            DiskFormat::Qcow2
        } else {
            qemu_img::convert(&source_path, Some(source.format), partial.file(), source.format, &|_| {}).await?;
            source.format
        };
        let info = info_of(partial.file(), Some(format), target.clone()).await?;
        partial.commit(&target).await?;
        Ok(info)
    }

    async fn resize_volume(
        &self,
        name: &str,
        format: DiskFormat,
        size: u64,
        allow_shrink: bool,
    ) -> Result<VolumeInfo, StorageError> {
        check_size(size)?;
        let current = self.volume_info(name, format).await?;
        let shrink = size < current.capacity_bytes;
        if shrink && !allow_shrink {
            return Err(StorageError::ShrinkRefused { current: current.capacity_bytes, requested: size });
        }
        qemu_img::resize(&current.path, current.format, size, shrink).await?;
        info_of(&current.path, Some(current.format), current.path.clone()).await
    }

    async fn delete_volume(&self, name: &str) -> Result<(), StorageError> {
        let path = self.checked_path(name)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(StorageError::VolumeNotFound { path }),
            Err(source) => Err(StorageError::Io { action: "delete", path, source }),
        }
    }

    async fn volume_info(&self, name: &str, format: DiskFormat) -> Result<VolumeInfo, StorageError> {
        let path = self.existing_volume(name).await?;
        // Never probe: a guest can write a qcow2 header (with a backing file naming a host file) into a raw disk.
        info_of(&path, Some(format), path.clone()).await
    }

    async fn remove_leftovers(&self) -> Result<Vec<PathBuf>, StorageError> {
        let mut entries = tokio::fs::read_dir(&self.path).await.map_err(StorageError::io("list", &self.path))?;
        let mut removed = Vec::new();
        while let Some(entry) = entries.next_entry().await.map_err(StorageError::io("list", &self.path))? {
            let file_name = entry.file_name();
            let is_partial = file_name.to_str().is_some_and(|n| n.starts_with('.') && n.contains(PARTIAL_MARKER));
            if !is_partial {
                continue;
            }
            let path = entry.path();
            tokio::fs::remove_dir_all(&path).await.map_err(StorageError::io("remove", &path))?;
            tracing::info!(path = %path.display(), "removed the remains of an interrupted volume creation");
            removed.push(path);
        }
        Ok(removed)
    }
}

/// A volume being written, as `POOL/.NAME.partial-RANDOM/NAME`: `commit`
/// renames it into place, and dropping the guard removes the working directory
/// and whatever is in it — on error, and when the future doing the work is
/// dropped (qemu-img is then killed).
///
/// A directory rather than a bare temporary file closes a race: a qemu-img
/// being killed may still finish an `open(O_CREAT)` of its file after the
/// file was removed, but nothing can be created in a directory once it is gone.
struct Partial {
    dir: PathBuf,
    file: PathBuf,
}

impl Partial {
    /// Fails with `VolumeExists` if `target` exists. The file is created empty,
    /// mode 0600; qemu-img truncates it and keeps the mode.
    async fn start(pool: &Path, name: &str, target: &Path) -> Result<Partial, StorageError> {
        match tokio::fs::symlink_metadata(target).await {
            Ok(_) => return Err(StorageError::VolumeExists { path: target.to_path_buf() }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StorageError::Io { action: "read", path: target.to_path_buf(), source }),
        }
        let dir = Self::make_dir(pool, name).await?;
        let partial = Partial { file: dir.join(name), dir };
        tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial.file)
            .await
            .map_err(StorageError::io("create", &partial.file))?;
        Ok(partial)
    }

    async fn make_dir(pool: &Path, name: &str) -> Result<PathBuf, StorageError> {
        let mut attempts = 0;
        loop {
            let random = RandomState::new().hash_one(std::time::SystemTime::now());
            let dir = pool.join(format!(".{name}{PARTIAL_MARKER}{random:016x}"));
            let mut builder = std::fs::DirBuilder::new();
            builder.mode(0o700);
            match builder.create(&dir) {
                Ok(()) => return Ok(dir),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
                Err(source) => return Err(StorageError::Io { action: "create", path: dir, source }),
            }
        }
    }

    fn file(&self) -> &Path {
        &self.file
    }

    /// Makes the volume durable, then visible as `target` unless that name was
    /// taken meanwhile (`VolumeExists`).
    async fn commit(self, target: &Path) -> Result<(), StorageError> {
        // Durable before visible: after a host crash the name never points to a half-written image.
        let file = tokio::fs::File::open(&self.file).await.map_err(StorageError::io("open", &self.file))?;
        file.sync_all().await.map_err(StorageError::io("sync", &self.file))?;
        rename_noreplace(&self.file, target)?;
        let pool = target.parent().unwrap_or(Path::new("."));
        let dir = tokio::fs::File::open(pool).await.map_err(StorageError::io("open", pool))?;
        dir.sync_all().await.map_err(StorageError::io("sync", pool))
        // Dropping `self` removes the now empty working directory.
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        // A second pass catches a file a dying qemu-img created during the first.
        let mut result = Ok(());
        for _ in 0..3 {
            result = std::fs::remove_dir_all(&self.dir);
            match &result {
                Ok(()) => return,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return,
                Err(_) => {}
            }
        }
        if let Err(err) = result {
            tracing::warn!(path = %self.dir.display(), error = %err, "cannot remove unfinished volume");
        }
    }
}

/// `rename` that fails with `VolumeExists` instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> Result<(), StorageError> {
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(StorageError::VolumeExists { path: to.to_path_buf() }),
        // Some filesystems (NFS, older FUSE) lack RENAME_NOREPLACE; a hard link refuses an existing name too.
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => match std::fs::hard_link(from, to) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                Err(StorageError::VolumeExists { path: to.to_path_buf() })
            }
            Err(source) => Err(StorageError::Io { action: "create", path: to.to_path_buf(), source }),
        },
        Err(errno) => Err(StorageError::Io { action: "rename", path: to.to_path_buf(), source: errno.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_leave_the_pool_are_refused() {
        for name in ["", "../x", "a/b", ".hidden", "..", ".", "/etc/passwd", "a\0b"] {
            assert!(matches!(check_name(name), Err(StorageError::InvalidName { .. })), "{name:?}");
        }
        for name in ["disk", "web1.qcow2", "a..b", "x-y_z"] {
            assert!(check_name(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn sizes_are_whole_sectors() {
        assert!(check_size(0).is_ok() && check_size(1 << 30).is_ok());
        assert!(matches!(check_size(1000), Err(StorageError::InvalidSize { size: 1000 })));
    }
}
