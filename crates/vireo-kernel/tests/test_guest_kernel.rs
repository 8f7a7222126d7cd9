//! The real test guest's kernel (Debian's cloud kernel, an LZ4-compressed bzImage) through the
//! cache. Nothing here boots QEMU: every end-to-end test boots its guest through this path.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use vireo_kernel::{BootEntry, Compression, KernelCache, KernelImage, PreparedKernel, inspect, pvh_entry};

/// The test guest's kernel: from `$VIREO_TEST_GUEST_DIR` (default /var/cache/vireo/test-guest),
/// built by scripts/build-test-guest.sh when missing.
fn test_guest_kernel() -> PathBuf {
    let dir = std::env::var_os("VIREO_TEST_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/vireo/test-guest"));
    let kernel = dir.join("vmlinuz");
    if kernel.is_file() {
        return kernel;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-guest.sh");
    let output = Command::new(&script).env("VIREO_TEST_GUEST_DIR", &dir).output().expect("run build-test-guest.sh");
    assert!(output.status.success(), "build-test-guest.sh failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(kernel.is_file(), "no test guest kernel in {}", dir.display());
    kernel
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_test_guest_kernel_is_extracted_once_and_entered_through_pvh() {
    let kernel = test_guest_kernel();
    let bytes = fs::read(&kernel).unwrap();
    let Ok(KernelImage::BzImage(bz_image)) = inspect(&bytes) else { panic!("{} is not a bzImage", kernel.display()) };
    assert_eq!(bz_image.compression, Compression::Lz4Legacy);

    let tmp = tempfile::tempdir().unwrap();
    let cache_dir = tmp.path().join("kernels");
    let cache = KernelCache::new(&cache_dir);
    let prepared = cache.prepare(&kernel).unwrap();
    assert_eq!(prepared.entry, BootEntry::Pvh);
    assert_eq!(prepared.path.parent(), Some(cache_dir.as_path()));

    let vmlinux = fs::read(&prepared.path).unwrap();
    assert!(vmlinux.starts_with(b"\x7fELF\x02"), "the cached file is not an ELF64");
    let entry = pvh_entry(&vmlinux).unwrap().expect("the cached vmlinux has no PVH note");
    assert!(entry >= 0x10_0000, "PVH entry {entry:#x} below 1 MiB");
    assert_eq!(mode(&prepared.path), 0o600);
    assert_eq!(mode(&cache_dir), 0o700);

    // Again, from the memo and then from a fresh cache that must hash the kernel: the same file,
    // not rewritten.
    let written = fs::metadata(&prepared.path).unwrap().ino();
    assert_eq!(cache.prepare(&kernel).unwrap(), prepared);
    assert_eq!(KernelCache::new(&cache_dir).prepare(&kernel).unwrap(), prepared);
    assert_eq!(fs::metadata(&prepared.path).unwrap().ino(), written);
    assert_eq!(fs::read_dir(&cache_dir).unwrap().count(), 1, "one file in the cache, no leftovers");

    // The extracted vmlinux given directly is booted as it is, through PVH.
    let direct = PreparedKernel { path: prepared.path.clone(), entry: BootEntry::Pvh };
    assert_eq!(KernelCache::new(tmp.path().join("other")).prepare(&prepared.path).unwrap(), direct);
}
