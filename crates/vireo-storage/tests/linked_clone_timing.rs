//! A linked clone is thin whatever the size of its base; the test also prints
//! how long each took (figures only, never asserted). See them with:
//! `cargo test -p vireo-storage --release --test linked_clone_timing -- --nocapture`

mod common;

use std::time::{Duration, Instant};

use common::{GIB, pool};
use vireo_api::DiskFormat;
use vireo_storage::{PoolDriver, VolumeSource};

const RUNS: usize = 5;

#[tokio::test]
async fn linked_clones_are_thin_for_any_base_size() {
    let (_tmp, pool) = pool();
    pool.prepare().await.unwrap();
    for size_gib in [1, 20] {
        let base = pool.create_volume(&format!("base-{size_gib}g"), size_gib * GIB, DiskFormat::Qcow2).await.unwrap();
        let source = VolumeSource { path: base.path, format: DiskFormat::Qcow2 };
        let mut times: Vec<Duration> = Vec::new();
        for run in 0..RUNS {
            let start = Instant::now();
            let clone = pool.clone_volume(&format!("clone-{size_gib}g-{run}"), &source, true).await.unwrap();
            times.push(start.elapsed());
            assert_eq!(clone.capacity_bytes, size_gib * GIB);
            assert_eq!(clone.backing_file.as_deref(), Some(source.path.as_path()));
            assert!(
                clone.allocation_bytes < 1 << 20,
                "a linked clone copies nothing: {} bytes",
                clone.allocation_bytes
            );
        }
        times.sort();
        println!(
            "linked clone of a {size_gib} GiB sparse qcow2 base: median {:.1} ms (min {:.1}, max {:.1}, {RUNS} runs)",
            times[RUNS / 2].as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[RUNS - 1].as_secs_f64() * 1e3,
        );
    }
}
