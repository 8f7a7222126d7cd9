//! Offline internal snapshots of qcow2 images, with the real qemu-img.

mod common;

use common::{MIB, has_pattern, pool, write_pattern};
use vireo_api::DiskFormat;
use vireo_storage::{PoolDriver, StorageError, qemu_img};

#[tokio::test]
async fn snapshot_create_list_apply_delete() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let path = pool.create_volume("v", 8 * MIB, DiskFormat::Qcow2).await.unwrap().path;
    assert!(qemu_img::snapshot_list(&path).await.unwrap().is_empty());

    write_pattern("qcow2", &path, 0xaa, 0, 64 * 1024);
    qemu_img::snapshot_create(&path, "before").await.unwrap();
    assert_eq!(qemu_img::snapshot_list(&path).await.unwrap(), ["before"]);

    write_pattern("qcow2", &path, 0xbb, 0, 64 * 1024);
    assert!(has_pattern("qcow2", &path, 0xbb, 0, 64 * 1024));
    qemu_img::snapshot_apply(&path, "before").await.unwrap();
    assert!(has_pattern("qcow2", &path, 0xaa, 0, 64 * 1024));

    qemu_img::snapshot_delete(&path, "before").await.unwrap();
    assert!(qemu_img::snapshot_list(&path).await.unwrap().is_empty());
    assert!(has_pattern("qcow2", &path, 0xaa, 0, 64 * 1024));
}

#[tokio::test]
async fn snapshot_tags_are_unique_and_must_exist() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let path = pool.create_volume("v", MIB, DiskFormat::Qcow2).await.unwrap().path;
    qemu_img::snapshot_create(&path, "s").await.unwrap();
    let err = qemu_img::snapshot_create(&path, "s").await.unwrap_err();
    assert!(matches!(err, StorageError::SnapshotExists { .. }), "{err}");
    for result in [qemu_img::snapshot_apply(&path, "nope").await, qemu_img::snapshot_delete(&path, "nope").await] {
        assert!(matches!(result, Err(StorageError::SnapshotNotFound { .. })), "{result:?}");
    }
    let err = qemu_img::snapshot_create(&path, "").await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidSnapshotTag { .. }), "{err}");
    assert_eq!(qemu_img::snapshot_list(&path).await.unwrap(), ["s"]);
}

/// `qemu-img snapshot -a 1` would apply the snapshot with *id* 1 (tagged "first" here).
#[tokio::test]
async fn a_numeric_tag_applies_that_tag_not_that_id() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let path = pool.create_volume("v", MIB, DiskFormat::Qcow2).await.unwrap().path;
    write_pattern("qcow2", &path, 0x01, 0, 4096);
    qemu_img::snapshot_create(&path, "first").await.unwrap();
    write_pattern("qcow2", &path, 0x02, 0, 4096);
    qemu_img::snapshot_create(&path, "1").await.unwrap();
    write_pattern("qcow2", &path, 0x03, 0, 4096);

    qemu_img::snapshot_apply(&path, "1").await.unwrap();
    assert!(has_pattern("qcow2", &path, 0x02, 0, 4096));
    qemu_img::snapshot_delete(&path, "1").await.unwrap();
    assert_eq!(qemu_img::snapshot_list(&path).await.unwrap(), ["first"]);
}

#[tokio::test]
async fn snapshots_of_a_raw_image_fail_cleanly() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let path = pool.create_volume("v", MIB, DiskFormat::Raw).await.unwrap().path;
    let err = qemu_img::snapshot_create(&path, "s").await.unwrap_err();
    assert!(matches!(err, StorageError::QemuImg { .. }), "{err}");
}

#[tokio::test]
async fn info_reports_the_image() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let base = pool.create_volume("base", 4 * MIB, DiskFormat::Qcow2).await.unwrap();
    let source = vireo_storage::VolumeSource { path: base.path.clone(), format: DiskFormat::Qcow2 };
    let clone = pool.clone_volume("clone", &source, true).await.unwrap();
    qemu_img::snapshot_create(&clone.path, "s").await.unwrap();
    let info = qemu_img::info(&clone.path).await.unwrap();
    assert_eq!((info.format.as_str(), info.virtual_size), ("qcow2", 4 * MIB));
    assert!(info.actual_size.is_some_and(|size| size > 0));
    assert_eq!(info.backing_filename.as_deref(), base.path.to_str());
    assert_eq!(info.full_backing_filename.as_deref(), Some(base.path.as_path()));
    assert_eq!(info.backing_format.as_deref(), Some("qcow2"));
    assert_eq!(info.snapshots.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["s"]);

    let err = qemu_img::info(&pool.path().join("missing")).await.unwrap_err();
    assert!(err.to_string().contains("No such file"), "{err}");
}
