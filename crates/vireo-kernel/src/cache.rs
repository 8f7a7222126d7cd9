//! The cache of extracted vmlinux files: the one part of the crate that does I/O.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use tracing::{debug, warn};

use crate::extract::SIZE_LIMIT;

/// How many extracted kernels the cache keeps (each ~50 MB for a distribution kernel): a
/// host boots its guests from a few kernels at a time, and a kernel upgrade should not
/// leave the old ones behind for ever.
pub const KEPT_VMLINUX: usize = 4;
/// A `.partial-*` file older than this was left by a crash, not by a write under way.
const STRAY_PARTIAL_AGE: Duration = Duration::from_secs(3600);
use crate::image::{KernelImage, inspect};
use crate::{Entry, KernelError, choose_entry};

/// Where the extracted vmlinux of each bzImage is kept, named by the bzImage's SHA-256:
/// `<sha256>.vmlinux`, or `<sha256>.none` (holding the reason) when the bzImage is booted as
/// given, so it is not decompressed again at every start. Files are complete or absent.
/// At most [`KEPT_VMLINUX`] vmlinux files stay, the most recently used (each use sets its
/// mtime); an evicted one is extracted again when next needed.
///
/// Synchronous: call it from `tokio::task::spawn_blocking`.
#[derive(Debug)]
pub struct KernelCache {
    dir: PathBuf,
    /// What each kernel file prepared to, valid while its identity is unchanged: spares
    /// reading and hashing the file (tens of milliseconds for 14 MB) at every VM start.
    memo: Mutex<HashMap<FileIdentity, PreparedKernel>>,
    /// Held while a bzImage is decompressed, so VMs starting together with one kernel
    /// decompress it once: the others wait, then find it cached.
    extracting: Mutex<()>,
}

/// The kernel file to give QEMU (`-kernel <path>`) and how it will be entered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedKernel {
    pub path: PathBuf,
    pub entry: BootEntry,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// An ELF vmlinux entered at its PVH note, in 32-bit protected mode.
    Pvh,
    /// The kernel as given: a bzImage through the Linux boot protocol (or whatever QEMU
    /// makes of another file).
    Linux,
}

/// A kernel file as it is now: any change to it gives another identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FileIdentity {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

/// What [`choose_entry`] decided, reduced to what the cache acts on.
enum Decision {
    PvhAsGiven,
    Extracted(Vec<u8>),
    AsGiven { reason: String },
}

impl KernelCache {
    /// A cache in `dir`, created (0700) when the first file is written to it.
    pub fn new(dir: impl Into<PathBuf>) -> KernelCache {
        KernelCache { dir: dir.into(), memo: Mutex::default(), extracting: Mutex::default() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file QEMU should boot for `kernel`, and its entry. Fails only when `kernel` cannot be
    /// read or the cache cannot be written: an image this crate cannot use (or finds damaged)
    /// is booted as given, as it was before PVH, and QEMU or the guest judge it.
    pub fn prepare(&self, kernel: &Path) -> Result<PreparedKernel, KernelError> {
        let mut file = File::open(kernel).map_err(KernelError::io("open kernel", kernel))?;
        let metadata = file.metadata().map_err(KernelError::io("stat kernel", kernel))?;
        let identity = FileIdentity::new(kernel, &metadata);
        if let Some(prepared) = self.remembered(&identity) {
            return Ok(prepared);
        }
        let mut bytes = Vec::with_capacity(metadata.len().min(SIZE_LIMIT as u64) as usize);
        (&mut file)
            .take(SIZE_LIMIT as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(KernelError::io("read kernel", kernel))?;
        let prepared = if bytes.len() > SIZE_LIMIT {
            warn!(kernel = %kernel.display(), "booting the kernel as given: larger than {SIZE_LIMIT} bytes");
            PreparedKernel::as_given(kernel)
        } else {
            self.resolve(kernel, &bytes)?
        };
        lock(&self.memo).insert(identity, prepared.clone());
        Ok(prepared)
    }

    fn remembered(&self, identity: &FileIdentity) -> Option<PreparedKernel> {
        let prepared = lock(&self.memo).get(identity).cloned()?;
        if prepared.path == identity.path {
            return Some(prepared);
        }
        // The cached file may have been evicted or removed since.
        mark_used(&prepared.path).then_some(prepared)
    }

    fn resolve(&self, kernel: &Path, bytes: &[u8]) -> Result<PreparedKernel, KernelError> {
        // Only a bzImage needs decompressing; every other decision is a glance at headers.
        let needs_extraction =
            matches!(inspect(bytes), Ok(KernelImage::BzImage(bz_image)) if bz_image.compression.is_extractable());
        if !needs_extraction {
            return Ok(match decide(kernel, bytes) {
                Decision::PvhAsGiven => PreparedKernel { path: kernel.to_path_buf(), entry: BootEntry::Pvh },
                Decision::Extracted(_) | Decision::AsGiven { .. } => PreparedKernel::as_given(kernel),
            });
        }
        let hash = format!("{:x}", Sha256::digest(bytes));
        let vmlinux_path = self.dir.join(format!("{hash}.vmlinux"));
        let none_path = self.dir.join(format!("{hash}.none"));
        let cached = || {
            if mark_used(&vmlinux_path) {
                Some(PreparedKernel { path: vmlinux_path.clone(), entry: BootEntry::Pvh })
            } else {
                none_path.is_file().then(|| PreparedKernel::as_given(kernel))
            }
        };
        if let Some(prepared) = cached() {
            return Ok(prepared);
        }
        let _extracting = lock(&self.extracting);
        if let Some(prepared) = cached() {
            return Ok(prepared);
        }
        match decide(kernel, bytes) {
            Decision::Extracted(vmlinux) => {
                self.write_atomically(&vmlinux_path, &vmlinux)?;
                self.evict_least_recently_used(&vmlinux_path);
                Ok(PreparedKernel { path: vmlinux_path, entry: BootEntry::Pvh })
            }
            Decision::AsGiven { reason } => {
                self.write_atomically(&none_path, reason.as_bytes())?;
                Ok(PreparedKernel::as_given(kernel))
            }
            Decision::PvhAsGiven => Ok(PreparedKernel { path: kernel.to_path_buf(), entry: BootEntry::Pvh }),
        }
    }

    /// Removes all but the [`KEPT_VMLINUX`] most recently used vmlinux files (never `just_written`),
    /// and temporary files a crash left. Failures are logged: the cache still works, only bigger.
    fn evict_least_recently_used(&self, just_written: &Path) {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) => return warn!(dir = %self.dir.display(), %error, "cannot list the kernel cache to trim it"),
        };
        let now = SystemTime::now();
        let mut vmlinux = Vec::new();
        for entry in entries.flatten() {
            let (path, name) = (entry.path(), entry.file_name());
            let modified = entry.metadata().and_then(|metadata| metadata.modified()).unwrap_or(now);
            let name = name.to_string_lossy();
            if name.ends_with(".vmlinux") && path != just_written {
                vmlinux.push((modified, path));
            } else if name.starts_with(".partial-")
                && now.duration_since(modified).unwrap_or_default() > STRAY_PARTIAL_AGE
            {
                remove(&path);
            }
        }
        vmlinux.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in vmlinux.iter().skip(KEPT_VMLINUX.saturating_sub(1)) {
            remove(path);
        }
    }

    /// Writes `path` so that it is never seen incomplete, even after a crash: a 0600 temporary
    /// file in the same directory, synced, then renamed. A crash leaves at most a stray
    /// `.partial-*` file, never a half-written vmlinux under its final name.
    fn write_atomically(&self, path: &Path, contents: &[u8]) -> Result<(), KernelError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(KernelError::io("create kernel cache directory", &self.dir))?;
        let mut file = tempfile::Builder::new()
            .prefix(".partial-")
            .tempfile_in(&self.dir)
            .map_err(KernelError::io("create a temporary file in", &self.dir))?;
        file.write_all(contents)
            .and_then(|()| file.as_file().sync_all())
            .map_err(KernelError::io("write", file.path()))?;
        match file.persist_noclobber(path) {
            Ok(_) => Ok(()),
            // Another process cached the same kernel first: same hash, same contents.
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(error) => Err(KernelError::Io { action: "rename into", path: path.to_path_buf(), source: error.error }),
        }
    }
}

fn decide(kernel: &Path, bytes: &[u8]) -> Decision {
    match choose_entry(bytes) {
        Ok(Entry::PvhAsGiven { .. }) => Decision::PvhAsGiven,
        Ok(Entry::PvhExtracted { vmlinux, .. }) => Decision::Extracted(vmlinux),
        Ok(Entry::AsGiven(reason)) => {
            debug!(kernel = %kernel.display(), %reason, "booting the kernel as given");
            Decision::AsGiven { reason: reason.to_string() }
        }
        Err(error) => {
            let reason = error_chain(&error);
            warn!(kernel = %kernel.display(), %reason, "booting the kernel as given");
            Decision::AsGiven { reason }
        }
    }
}

/// Whether `path` is a file, and if so, records that it was just used (its mtime) for eviction.
fn mark_used(path: &Path) -> bool {
    match File::options().write(true).open(path) {
        Ok(file) => {
            if let Err(error) = file.set_modified(SystemTime::now()) {
                debug!(path = %path.display(), %error, "cannot mark a cached kernel as used");
            }
            true
        }
        Err(_) => path.is_file(),
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => debug!(path = %path.display(), "removed from the kernel cache"),
        Err(error) => warn!(path = %path.display(), %error, "cannot remove from the kernel cache"),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

impl PreparedKernel {
    fn as_given(kernel: &Path) -> PreparedKernel {
        PreparedKernel { path: kernel.to_path_buf(), entry: BootEntry::Linux }
    }
}

impl FileIdentity {
    fn new(path: &Path, metadata: &Metadata) -> FileIdentity {
        FileIdentity {
            path: path.to_path_buf(),
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000 + i128::from(metadata.mtime_nsec()),
        }
    }
}

/// The memo stays consistent whatever panicked while holding it: each change is one insert.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::Compression;
    use crate::testing::{bzimage, compress, elf};

    const ENTRY: u32 = 0x0100_0a20;

    struct Setup {
        _tmp: tempfile::TempDir,
        kernel: PathBuf,
        cache_dir: PathBuf,
    }

    fn setup(image: &[u8]) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let kernel = tmp.path().join("vmlinuz");
        fs::write(&kernel, image).unwrap();
        let cache_dir = tmp.path().join("cache").join("kernels");
        Setup { _tmp: tmp, kernel, cache_dir }
    }

    fn cache_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> =
            fs::read_dir(dir).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_bzimage_with_pvh_is_extracted_once_into_a_private_file() {
        let vmlinux = elf(Some(ENTRY));
        let s = setup(&bzimage(&compress(Compression::Xz, &vmlinux)));
        let prepared = KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap();
        assert_eq!(prepared.entry, BootEntry::Pvh);
        assert_eq!(prepared.path.parent(), Some(s.cache_dir.as_path()));
        assert!(prepared.path.to_str().unwrap().ends_with(".vmlinux"));
        assert_eq!(fs::read(&prepared.path).unwrap(), vmlinux);
        assert_eq!(mode(&prepared.path), 0o600);
        assert_eq!(mode(&s.cache_dir), 0o700);
        assert_eq!(cache_files(&s.cache_dir).len(), 1, "no temporary file is left behind");

        // A fresh memo finds the file by the kernel's hash and does not write it again.
        let written = fs::metadata(&prepared.path).unwrap().ino();
        assert_eq!(KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap(), prepared);
        assert_eq!(fs::metadata(&prepared.path).unwrap().ino(), written);
    }

    #[test]
    fn a_bzimage_without_pvh_is_remembered_as_such() {
        let s = setup(&bzimage(&compress(Compression::Gzip, &elf(None))));
        let cache = KernelCache::new(&s.cache_dir);
        let expected = PreparedKernel { path: s.kernel.clone(), entry: BootEntry::Linux };
        assert_eq!(cache.prepare(&s.kernel).unwrap(), expected);
        let names = cache_files(&s.cache_dir);
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with(".none"), "{names:?}");
        let marker = s.cache_dir.join(&names[0]);
        assert_eq!(fs::read_to_string(&marker).unwrap(), "a bzImage whose vmlinux has no PVH note");
        assert_eq!(mode(&marker), 0o600);
        assert_eq!(KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap(), expected);
    }

    #[test]
    fn a_damaged_bzimage_is_booted_as_given() {
        let mut payload = compress(Compression::Gzip, &elf(Some(ENTRY)));
        let crc32 = payload.len() - 8;
        payload[crc32] ^= 0xff;
        let s = setup(&bzimage(&payload));
        let prepared = KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap();
        assert_eq!(prepared, PreparedKernel { path: s.kernel.clone(), entry: BootEntry::Linux });
        let names = cache_files(&s.cache_dir);
        let reason = fs::read_to_string(s.cache_dir.join(&names[0])).unwrap();
        assert!(reason.starts_with("cannot decompress the gzip payload: "), "{reason}");
    }

    #[test]
    fn an_elf_with_pvh_is_booted_itself_without_caching() {
        let s = setup(&elf(Some(ENTRY)));
        let prepared = KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap();
        assert_eq!(prepared, PreparedKernel { path: s.kernel.clone(), entry: BootEntry::Pvh });
        assert!(!s.cache_dir.exists());
    }

    #[test]
    fn other_files_are_booted_as_given_without_caching() {
        for image in [elf(None), b"not a kernel".to_vec(), bzimage(&compress(Compression::Lzo, &elf(Some(1))))] {
            let s = setup(&image);
            let prepared = KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap();
            assert_eq!(prepared, PreparedKernel { path: s.kernel.clone(), entry: BootEntry::Linux });
            assert!(!s.cache_dir.exists());
        }
    }

    #[test]
    fn a_changed_kernel_file_is_prepared_again() {
        let s = setup(&bzimage(&compress(Compression::Zstd, &elf(Some(ENTRY)))));
        let cache = KernelCache::new(&s.cache_dir);
        let first = cache.prepare(&s.kernel).unwrap();
        assert_eq!(first.entry, BootEntry::Pvh);
        // Replaced by a kernel without PVH: the memo must not answer for the old file.
        let replacement = s.kernel.with_extension("new");
        fs::write(&replacement, bzimage(&compress(Compression::Zstd, &elf(None)))).unwrap();
        fs::rename(&replacement, &s.kernel).unwrap();
        assert_eq!(cache.prepare(&s.kernel).unwrap().entry, BootEntry::Linux);
    }

    #[test]
    fn a_removed_cache_file_is_extracted_again() {
        let s = setup(&bzimage(&compress(Compression::Lz4Legacy, &elf(Some(ENTRY)))));
        let cache = KernelCache::new(&s.cache_dir);
        let first = cache.prepare(&s.kernel).unwrap();
        fs::remove_dir_all(&s.cache_dir).unwrap();
        assert_eq!(cache.prepare(&s.kernel).unwrap(), first);
        assert!(first.path.is_file());
    }

    #[test]
    fn only_the_most_recently_used_kernels_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = KernelCache::new(tmp.path().join("kernels"));
        // Distinct kernels: each vmlinux differs in its entry address.
        let kernels: Vec<PathBuf> = (0..=KEPT_VMLINUX as u32)
            .map(|n| {
                let path = tmp.path().join(format!("vmlinuz-{n}"));
                fs::write(&path, bzimage(&compress(Compression::Gzip, &elf(Some(ENTRY + n))))).unwrap();
                path
            })
            .collect();
        let first = cache.prepare(&kernels[0]).unwrap();
        let mut prepared = vec![first.clone()];
        for kernel in &kernels[1..KEPT_VMLINUX] {
            prepared.push(cache.prepare(kernel).unwrap());
        }
        // The first is used again, so the second is now the least recently used.
        let past = SystemTime::now() - Duration::from_secs(60);
        for (age, kernel) in prepared.iter().enumerate() {
            File::options()
                .write(true)
                .open(&kernel.path)
                .unwrap()
                .set_modified(past + Duration::from_secs(age as u64))
                .unwrap();
        }
        assert_eq!(cache.prepare(&kernels[0]).unwrap(), first);
        let last = cache.prepare(&kernels[KEPT_VMLINUX]).unwrap();

        let kept: Vec<String> =
            cache_files(cache.dir()).into_iter().filter(|name| name.ends_with(".vmlinux")).collect();
        assert_eq!(kept.len(), KEPT_VMLINUX, "{kept:?}");
        assert!(first.path.is_file() && last.path.is_file());
        assert!(!prepared[1].path.exists(), "the least recently used kernel went");
        // And comes back when needed.
        assert_eq!(cache.prepare(&kernels[1]).unwrap(), prepared[1]);
        assert!(prepared[1].path.is_file());
    }

    #[test]
    fn concurrent_starts_share_one_extraction() {
        let s = setup(&bzimage(&compress(Compression::Lzma, &elf(Some(ENTRY)))));
        let cache = KernelCache::new(&s.cache_dir);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8).map(|_| scope.spawn(|| cache.prepare(&s.kernel).unwrap())).collect();
            handles.into_iter().map(|handle| handle.join().unwrap()).collect()
        });
        assert!(results.iter().all(|prepared| *prepared == results[0] && prepared.entry == BootEntry::Pvh));
        assert_eq!(cache_files(&s.cache_dir).len(), 1);
    }

    #[test]
    fn a_missing_kernel_is_an_error_naming_it() {
        let s = setup(b"");
        let missing = s.kernel.with_file_name("no-such-kernel");
        let error = KernelCache::new(&s.cache_dir).prepare(&missing).unwrap_err();
        assert_eq!(error.to_string(), format!("cannot open kernel {}", missing.display()));
    }

    #[test]
    fn an_unwritable_cache_is_an_error_naming_it() {
        let s = setup(&bzimage(&compress(Compression::Gzip, &elf(Some(ENTRY)))));
        // A file where the cache directory should be: even root cannot create it.
        fs::create_dir_all(s.cache_dir.parent().unwrap()).unwrap();
        fs::write(&s.cache_dir, b"").unwrap();
        let error = KernelCache::new(&s.cache_dir).prepare(&s.kernel).unwrap_err();
        assert!(error.to_string().contains(&s.cache_dir.display().to_string()), "{error}");
    }

    #[test]
    fn the_cache_can_be_shared_between_tasks() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<KernelCache>();
    }
}
