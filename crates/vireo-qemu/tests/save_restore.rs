//! Saving the running test guest's state to a file and starting it again from there (TCG).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{
    Console, KillOnDrop, boot_to_prompt, caps, create_image, events_until, guest_uptime, qemu_binary, runtime_dir,
    small_guest_spec, take_console,
};
use vireo_api::Accel;
use vireo_qemu::{Launch, QemuError, QemuEvent};

const SAVE_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_saved_guest_resumes_where_it_was() {
    let (dir, paths) = runtime_dir();
    let root = dir.path().join("root.qcow2");
    create_image(&root, "64M");
    let spec = small_guest_spec("saved", &[&root]);
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let mut console = boot_to_prompt(&mut vm).await;
    let err = vm.qmp.wait_incoming(Duration::from_secs(5)).await.expect_err("not started from a state file");
    assert!(matches!(&err, QemuError::Migration { status, .. } if status == "none"), "{err}");

    // A save that cannot finish in time is cancelled: the guest runs on, no file is left.
    let state = dir.path().join("state.save");
    let err = vm.qmp.save_to_file(&paths, &state, Duration::from_millis(1)).await.expect_err("too short");
    assert!(matches!(err, QemuError::MigrationTimeout { .. }), "{err}");
    assert!(vm.qmp.query_status().await.unwrap().running);
    assert!(!state.exists() && !dir.path().join("state.save.partial").exists());
    let err = vm.qmp.save_to_file(&paths, &dir.path().join("no/such/dir"), SAVE_TIMEOUT).await.expect_err("no dir");
    assert!(matches!(err, QemuError::StateFile { .. }), "{err}");

    console.run("echo kept > /tmp/y").await;
    let uptime_saved = guest_uptime(&mut console).await;
    let save = Instant::now();
    vm.qmp.save_to_file(&paths, &state, SAVE_TIMEOUT).await.expect("save_to_file");
    let saved = save.elapsed();
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "postmigrate");
    let metadata = std::fs::metadata(&state).expect("state file");
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert!(!dir.path().join("state.save.partial").exists());
    assert!(!paths.migrate_socket().exists());
    eprintln!("timing: save_to_file {} ms, {} MiB", saved.as_millis(), metadata.len() >> 20);
    vm.qmp.quit().await.unwrap();
    events_until(&mut vm.events, QemuEvent::Exited).await;
    drop(guard);

    let mut launch = Launch::with_path_disks(&spec, Accel::Tcg, &caps().await);
    launch.incoming = Some(vireo_qemu::Incoming::StateFile(state));
    let restore = Instant::now();
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &launch, &paths).await.expect("spawn with incoming");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    vm.qmp.wait_incoming(SAVE_TIMEOUT).await.expect("wait_incoming");
    eprintln!("timing: restore (spawn → incoming complete) {} ms", restore.elapsed().as_millis());
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "paused");
    let mut console = Console::new(take_console(&mut vm));
    vm.qmp.cont().await.expect("cont");
    assert_eq!(console.run("cat /tmp/y").await, "kept");
    let uptime_restored = guest_uptime(&mut console).await;
    assert!(uptime_restored >= uptime_saved, "uptime went back: {uptime_saved} s saved, {uptime_restored} s now");
}

#[tokio::test]
async fn a_truncated_state_file_fails_the_restore_with_qemus_reason() {
    let (dir, paths) = runtime_dir();
    let state = dir.path().join("broken.save");
    // QEMU's stream magic ("QEVM", version 3), then nothing.
    std::fs::write(&state, b"QEVM\0\0\0\x03").unwrap();
    let spec = small_guest_spec("broken", &[]);
    let mut launch = Launch::with_path_disks(&spec, Accel::Tcg, &caps().await);
    launch.incoming = Some(vireo_qemu::Incoming::StateFile(state));
    let outcome = match vireo_qemu::spawn(&qemu_binary(), &launch, &paths).await {
        Err(err) => err,
        Ok(vm) => {
            let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
            vm.qmp.wait_incoming(SAVE_TIMEOUT).await.expect_err("a truncated state must not load")
        }
    };
    eprintln!("restore from a truncated file: {outcome}");
    assert!(matches!(outcome, QemuError::StartFailed { .. } | QemuError::QmpClosed), "{outcome}");
    let log = std::fs::read_to_string(paths.qemu_log()).unwrap();
    assert!(log.contains("load of migration failed"), "{log}");
}
