//! DirPool against the real qemu-img, in temporary directories.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Mutex;

use common::{GIB, MIB, entries, has_pattern, make_image, pool, write_pattern};
use vireo_api::{DiskFormat, PoolType};
use vireo_storage::{DirPool, PoolDriver, StorageError, VolumeSource};

#[tokio::test]
async fn prepare_creates_a_private_directory() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let metadata = std::fs::metadata(pool.path()).unwrap();
    assert!(metadata.is_dir());
    assert_eq!(metadata.permissions().mode() & 0o777, 0o700);
    assert_eq!(pool.pool_type(), PoolType::Dir);
    // Idempotent.
    pool.prepare().await.unwrap();
}

#[tokio::test]
async fn prepare_refuses_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = DirPool::new(file).prepare().await.unwrap_err();
    assert!(matches!(err, StorageError::PoolUnusable { .. }), "{err}");
}

#[tokio::test]
async fn creates_qcow2_and_raw_volumes() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();

    let qcow2 = pool.create_volume("a.qcow2", GIB, DiskFormat::Qcow2).await.unwrap();
    assert_eq!(qcow2.path, pool.path().join("a.qcow2"));
    assert_eq!((qcow2.format, qcow2.capacity_bytes), (DiskFormat::Qcow2, GIB));
    assert!(qcow2.backing_file.is_none() && qcow2.backing_chain.is_empty());

    let raw = pool.create_volume("b.raw", 16 * MIB, DiskFormat::Raw).await.unwrap();
    assert_eq!((raw.format, raw.capacity_bytes), (DiskFormat::Raw, 16 * MIB));
    assert_eq!(pool.volume_info("b.raw", DiskFormat::Raw).await.unwrap(), raw);

    for name in ["a.qcow2", "b.raw"] {
        let mode = std::fs::metadata(pool.path().join(name)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // Nothing but the volumes: no working files left behind.
    assert_eq!(entries(pool.path()), ["a.qcow2", "b.raw"]);
}

#[tokio::test]
async fn create_refuses_an_existing_name_and_leaves_it_alone() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    pool.create_volume("v", MIB, DiskFormat::Raw).await.unwrap();
    let err = pool.create_volume("v", GIB, DiskFormat::Qcow2).await.unwrap_err();
    assert!(matches!(err, StorageError::VolumeExists { .. }), "{err}");
    let info = pool.volume_info("v", DiskFormat::Raw).await.unwrap();
    assert_eq!((info.format, info.capacity_bytes), (DiskFormat::Raw, MIB));
    assert_eq!(entries(pool.path()), ["v"]);
}

#[tokio::test]
async fn names_that_leave_the_pool_are_refused() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    for name in ["../escape", "sub/dir", ".hidden", "..", ""] {
        let err = pool.create_volume(name, MIB, DiskFormat::Raw).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidName { .. }), "{name:?}: {err}");
        let err = pool.volume_info(name, DiskFormat::Raw).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidName { .. }), "{name:?}: {err}");
        let err = pool.delete_volume(name).await.unwrap_err();
        assert!(matches!(err, StorageError::InvalidName { .. }), "{name:?}: {err}");
    }
    assert_eq!(entries(tmp.path()), ["pool"]);
    assert!(entries(pool.path()).is_empty());
}

#[tokio::test]
async fn sizes_must_be_whole_sectors() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let err = pool.create_volume("v", 1000, DiskFormat::Qcow2).await.unwrap_err();
    assert!(matches!(err, StorageError::InvalidSize { size: 1000 }), "{err}");
    assert!(entries(pool.path()).is_empty());
}

#[tokio::test]
async fn linked_clone_reads_the_base_and_writes_only_itself() {
    let (_tmp, images) = pool();
    let (_tmp2, vms) = pool();
    images.prepare().await.unwrap();
    vms.prepare().await.unwrap();
    let base = images.create_volume("base", 64 * MIB, DiskFormat::Qcow2).await.unwrap();
    write_pattern("qcow2", &base.path, 0xab, 0, 64 * 1024);

    let source = VolumeSource { path: base.path.clone(), format: DiskFormat::Qcow2 };
    let clone = vms.clone_volume("web1", &source, true).await.unwrap();
    assert_eq!(clone.format, DiskFormat::Qcow2);
    assert_eq!(clone.capacity_bytes, 64 * MIB);
    assert!(has_pattern("qcow2", &clone.path, 0xab, 0, 64 * 1024));

    write_pattern("qcow2", &clone.path, 0xcd, 0, 64 * 1024);
    assert!(has_pattern("qcow2", &clone.path, 0xcd, 0, 64 * 1024));
    assert!(has_pattern("qcow2", &base.path, 0xab, 0, 64 * 1024));

    let info = vms.volume_info("web1", DiskFormat::Qcow2).await.unwrap();
    assert_eq!(info.backing_file.as_deref(), Some(base.path.as_path()));
    assert_eq!(info.backing_chain, std::slice::from_ref(&base.path));

    // A clone of the clone: the chain lists every image below, nearest first.
    let source = VolumeSource { path: clone.path.clone(), format: DiskFormat::Qcow2 };
    let second = vms.clone_volume("web2", &source, true).await.unwrap();
    assert_eq!(second.backing_chain, [clone.path.clone(), base.path.clone()]);
}

#[tokio::test]
async fn linked_clone_of_a_large_base_allocates_little() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let base = pool.create_volume("base", 20 * GIB, DiskFormat::Qcow2).await.unwrap();
    let source = VolumeSource { path: base.path, format: DiskFormat::Qcow2 };
    let clone = pool.clone_volume("clone", &source, true).await.unwrap();
    assert_eq!(clone.capacity_bytes, 20 * GIB);
    assert!(clone.allocation_bytes < MIB, "{}", clone.allocation_bytes);
    let on_disk = std::fs::metadata(&clone.path).unwrap().blocks() * 512;
    assert!(on_disk < MIB, "{on_disk}");
}

#[tokio::test]
async fn linked_clone_of_a_missing_source_leaves_nothing() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let source = VolumeSource { path: tmp.path().join("nope"), format: DiskFormat::Qcow2 };
    let err = pool.clone_volume("clone", &source, true).await.unwrap_err();
    assert!(matches!(err, StorageError::QemuImg { .. }), "{err}");
    assert!(entries(pool.path()).is_empty());
}

#[tokio::test]
async fn full_clone_copies_the_data_and_flattens_the_chain() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let base = pool.create_volume("base", 8 * MIB, DiskFormat::Qcow2).await.unwrap();
    write_pattern("qcow2", &base.path, 0x11, 0, 64 * 1024);
    let overlay_source = VolumeSource { path: base.path.clone(), format: DiskFormat::Qcow2 };
    let overlay = pool.clone_volume("overlay", &overlay_source, true).await.unwrap();
    write_pattern("qcow2", &overlay.path, 0x22, MIB, 64 * 1024);

    let source = VolumeSource { path: overlay.path.clone(), format: DiskFormat::Qcow2 };
    let copy = pool.clone_volume("copy", &source, false).await.unwrap();
    assert_eq!((copy.format, copy.capacity_bytes), (DiskFormat::Qcow2, 8 * MIB));
    assert!(copy.backing_file.is_none() && copy.backing_chain.is_empty());
    assert!(has_pattern("qcow2", &copy.path, 0x11, 0, 64 * 1024));
    assert!(has_pattern("qcow2", &copy.path, 0x22, MIB, 64 * 1024));

    write_pattern("qcow2", &copy.path, 0x33, 0, 64 * 1024);
    assert!(has_pattern("qcow2", &base.path, 0x11, 0, 64 * 1024));

    // A raw source stays raw.
    let raw = pool.create_volume("raw", 4 * MIB, DiskFormat::Raw).await.unwrap();
    write_pattern("raw", &raw.path, 0x44, 0, 4096);
    let source = VolumeSource { path: raw.path, format: DiskFormat::Raw };
    let raw_copy = pool.clone_volume("raw-copy", &source, false).await.unwrap();
    assert_eq!((raw_copy.format, raw_copy.capacity_bytes), (DiskFormat::Raw, 4 * MIB));
    assert!(has_pattern("raw", &raw_copy.path, 0x44, 0, 4096));
}

#[tokio::test]
async fn clone_refuses_an_existing_name() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let base = pool.create_volume("base", MIB, DiskFormat::Qcow2).await.unwrap();
    pool.create_volume("taken", MIB, DiskFormat::Raw).await.unwrap();
    let source = VolumeSource { path: base.path, format: DiskFormat::Qcow2 };
    for linked in [true, false] {
        let err = pool.clone_volume("taken", &source, linked).await.unwrap_err();
        assert!(matches!(err, StorageError::VolumeExists { .. }), "{err}");
    }
    assert_eq!(pool.volume_info("taken", DiskFormat::Raw).await.unwrap().format, DiskFormat::Raw);
    assert_eq!(entries(pool.path()), ["base", "taken"]);
}

#[tokio::test]
async fn import_converts_and_reports_monotonic_progress_ending_at_one() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let source = make_image(&tmp.path().join("disk.img"), "raw", "64M");
    write_pattern("raw", &source, 0x5a, 0, 32 * MIB);
    write_pattern("raw", &source, 0xa5, 48 * MIB, MIB);

    let seen = Mutex::new(Vec::new());
    let progress = |fraction: f64| seen.lock().unwrap().push(fraction);
    let info = pool.import_volume("imported", &source, DiskFormat::Qcow2, &progress).await.unwrap();
    assert_eq!((info.format, info.capacity_bytes), (DiskFormat::Qcow2, 64 * MIB));
    assert!(has_pattern("qcow2", &info.path, 0x5a, 0, 32 * MIB));
    assert!(has_pattern("qcow2", &info.path, 0xa5, 48 * MIB, MIB));

    let seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
    assert_eq!(seen.first(), Some(&0.0));
    assert_eq!(seen.last(), Some(&1.0));
    assert_eq!(entries(pool.path()), ["imported"]);
}

#[tokio::test]
async fn failed_imports_leave_nothing_behind() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    // A file with qcow2's magic and nothing valid after it.
    let corrupt = tmp.path().join("corrupt.qcow2");
    std::fs::write(&corrupt, b"QFI\xfb\0\0\0\x03garbage, not an image").unwrap();
    let sources = [tmp.path().join("missing.img"), tmp.path().to_path_buf(), corrupt];
    for source in &sources {
        let err = pool.import_volume("v", source, DiskFormat::Qcow2, &|_| {}).await.unwrap_err();
        assert!(matches!(err, StorageError::QemuImg { action: "convert", .. }), "{err}");
        assert!(err.to_string().contains(&source.display().to_string()), "{err}");
        assert!(entries(pool.path()).is_empty(), "{}: {:?}", source.display(), entries(pool.path()));
    }
}

#[tokio::test]
async fn import_refuses_an_existing_name() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    pool.create_volume("v", MIB, DiskFormat::Raw).await.unwrap();
    let source = make_image(&tmp.path().join("src.qcow2"), "qcow2", "2M");
    let err = pool.import_volume("v", &source, DiskFormat::Qcow2, &|_| {}).await.unwrap_err();
    assert!(matches!(err, StorageError::VolumeExists { .. }), "{err}");
    assert_eq!(pool.volume_info("v", DiskFormat::Raw).await.unwrap().format, DiskFormat::Raw);
}

#[tokio::test]
async fn a_cancelled_import_leaves_nothing_behind() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let source = make_image(&tmp.path().join("disk.img"), "raw", "256M");
    write_pattern("raw", &source, 0x77, 0, 128 * MIB);

    let started = tokio::sync::Notify::new();
    let progress = |_: f64| started.notify_one();
    tokio::select! {
        result = pool.import_volume("v", &source, DiskFormat::Qcow2, &progress) => {
            panic!("import finished before it was cancelled: {result:?}")
        }
        () = started.notified() => {}
    }
    // The import future is dropped: qemu-img is killed and the working directory removed.
    assert!(entries(pool.path()).is_empty(), "{:?}", entries(pool.path()));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(entries(pool.path()).is_empty(), "{:?}", entries(pool.path()));
}

#[tokio::test]
async fn resize_grows_and_shrinks_only_when_allowed() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    for (name, format) in [("q", DiskFormat::Qcow2), ("r", DiskFormat::Raw)] {
        pool.create_volume(name, 64 * MIB, format).await.unwrap();
        let grown = pool.resize_volume(name, format, 128 * MIB, false).await.unwrap();
        assert_eq!((grown.format, grown.capacity_bytes), (format, 128 * MIB));

        let path = pool.volume_path(name);
        let before = std::fs::read(&path).unwrap();
        let err = pool.resize_volume(name, format, 32 * MIB, false).await.unwrap_err();
        assert!(
            matches!(err, StorageError::ShrinkRefused { current, requested } if current == 128 * MIB && requested == 32 * MIB),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "{name} changed");
        assert_eq!(pool.volume_info(name, format).await.unwrap().capacity_bytes, 128 * MIB);

        let shrunk = pool.resize_volume(name, format, 32 * MIB, true).await.unwrap();
        assert_eq!(shrunk.capacity_bytes, 32 * MIB);
    }
    let err = pool.resize_volume("missing", DiskFormat::Raw, MIB, false).await.unwrap_err();
    assert!(matches!(err, StorageError::VolumeNotFound { .. }), "{err}");
}

#[tokio::test]
async fn usage_reports_the_filesystem_and_the_volumes() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let empty = pool.usage(&[]).await.unwrap();
    assert!(empty.capacity_bytes > 0 && empty.capacity_bytes >= empty.available_bytes);
    assert_eq!(empty.allocation_bytes, 0);

    let a = pool.create_volume("a", 8 * MIB, DiskFormat::Raw).await.unwrap();
    write_pattern("raw", &a.path, 0x01, 0, 4 * MIB);
    let b = pool.create_volume("b", GIB, DiskFormat::Qcow2).await.unwrap();
    let names = ["a".to_string(), "b".to_string(), "gone".to_string()];
    let usage = pool.usage(&names).await.unwrap();
    assert!(usage.capacity_bytes >= usage.available_bytes);
    let expected: u64 = [&a.path, &b.path].iter().map(|p| std::fs::metadata(p).unwrap().blocks() * 512).sum();
    assert_eq!(usage.allocation_bytes, expected);
    assert!(usage.allocation_bytes >= 4 * MIB);
}

#[tokio::test]
async fn delete_removes_the_file() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    pool.create_volume("v", MIB, DiskFormat::Qcow2).await.unwrap();
    pool.delete_volume("v").await.unwrap();
    assert!(entries(pool.path()).is_empty());
    let err = pool.delete_volume("v").await.unwrap_err();
    assert!(matches!(err, StorageError::VolumeNotFound { .. }), "{err}");
    let err = pool.volume_info("v", DiskFormat::Qcow2).await.unwrap_err();
    assert!(matches!(err, StorageError::VolumeNotFound { .. }), "{err}");
}

#[tokio::test]
async fn info_works_while_the_image_is_locked_by_another_process() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let volume = pool.create_volume("v", MIB, DiskFormat::Qcow2).await.unwrap();
    // qemu-io in interactive mode holds the image open with QEMU's locks, as a running VM would.
    let mut holder = std::process::Command::new("qemu-io")
        .args(["-f", "qcow2"])
        .arg(&volume.path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let info = pool.volume_info("v", DiskFormat::Qcow2).await;
    let resize = pool.resize_volume("v", DiskFormat::Qcow2, 2 * MIB, false).await;
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(info.unwrap().capacity_bytes, MIB);
    // Writing is refused while it is held: qemu-img's lock error comes through.
    let err = resize.unwrap_err();
    assert!(err.to_string().contains("lock"), "{err}");
}

#[tokio::test]
async fn remove_leftovers_clears_interrupted_work_only() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    pool.create_volume("keep", MIB, DiskFormat::Raw).await.unwrap();
    let leftover: PathBuf = pool.path().join(".v.partial-0123456789abcdef");
    std::fs::create_dir(&leftover).unwrap();
    std::fs::write(leftover.join("v"), b"half an image").unwrap();
    assert_eq!(pool.remove_leftovers().await.unwrap(), [leftover]);
    assert_eq!(entries(pool.path()), ["keep"]);
}

/// A guest can write a qcow2 header into its raw disk; the pool must keep calling that volume raw
/// wherever it knows the format: a full clone's source, and volume info.
#[tokio::test]
async fn a_raw_volume_holding_a_qcow2_header_stays_raw_when_the_format_is_known() {
    let (tmp, pool) = pool();
    pool.prepare().await.unwrap();
    let raw = pool.create_volume("raw", 4 * MIB, DiskFormat::Raw).await.unwrap();
    let disguise = make_image(&tmp.path().join("disguise.qcow2"), "qcow2", "1G");
    let header = std::fs::read(disguise).unwrap();
    let mut disk = std::fs::OpenOptions::new().write(true).open(&raw.path).unwrap();
    std::io::Write::write_all(&mut disk, &header).unwrap();
    drop(disk);

    let source = VolumeSource { path: raw.path.clone(), format: DiskFormat::Raw };
    let copy = pool.clone_volume("copy", &source, false).await.unwrap();
    assert_eq!((copy.format, copy.capacity_bytes), (DiskFormat::Raw, 4 * MIB));
    // The caller passes the format it recorded, so the disguise is never probed.
    let info = pool.volume_info("raw", DiskFormat::Raw).await.unwrap();
    assert_eq!((info.format, info.capacity_bytes), (DiskFormat::Raw, 4 * MIB));
    assert_eq!(info.backing_file, None);
}
