//! A missing qemu-img is a clear error. Alone in its test binary: it changes the environment.

use vireo_api::DiskFormat;
use vireo_storage::{DirPool, PoolDriver, StorageError};

#[tokio::test]
async fn a_missing_qemu_img_says_how_to_install_it() {
    let tmp = tempfile::tempdir().unwrap();
    // SAFETY: the only test of this binary, and it starts no other threads that read the environment.
    unsafe { std::env::set_var("VIREO_QEMU_IMG", tmp.path().join("no-qemu-img")) };
    let pool = DirPool::new(tmp.path().join("pool"));
    pool.prepare().await.unwrap();
    let err = pool.create_volume("v", 1 << 20, DiskFormat::Qcow2).await.unwrap_err();
    assert!(matches!(err, StorageError::QemuImgNotFound { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install qemu-utils"), "{err}");
    assert!(std::fs::read_dir(pool.path()).unwrap().next().is_none());
}
