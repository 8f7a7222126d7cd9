//! Boots the real test guest under TCG through the driver's public API.

mod common;

use std::time::{Duration, Instant};

use common::{
    Console, KillOnDrop, PROMPT, READY_MARKER, boot_to_prompt, caps, events_until, guest_spec, next_event, qemu_binary,
    runtime_dir, take_console,
};
use vireo_api::Accel;
use vireo_qemu::Launch;
use vireo_qemu::{QemuError, QemuEvent, RuntimePaths};

#[tokio::test]
async fn boots_answers_pauses_resumes_and_powers_off() {
    let (_dir, paths) = runtime_dir();
    let spec = guest_spec("lifecycle");
    let started = Instant::now();
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let qmp_ready = started.elapsed();
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "prelaunch");

    let mut console = Console::new(take_console(&mut vm));
    vm.qmp.cont().await.expect("cont");
    console.expect(READY_MARKER).await;
    let marker = started.elapsed();
    eprintln!("timing: spawn→QMP ready {} ms, spawn→{READY_MARKER} {} ms", qmp_ready.as_millis(), marker.as_millis());
    console.expect(PROMPT).await;
    console.send("echo $((6*7))\n").await;
    console.expect("\n42").await;
    assert_eq!(events_until(&mut vm.events, QemuEvent::Resumed).await, [QemuEvent::Resumed]);

    vm.qmp.stop().await.expect("stop");
    let status = vm.qmp.query_status().await.unwrap();
    assert!(!status.running, "{status:?}");
    assert_eq!(status.status, "paused");
    assert_eq!(next_event(&mut vm.events).await, QemuEvent::Paused);
    vm.qmp.cont().await.expect("resume");
    assert!(vm.qmp.query_status().await.unwrap().running);
    assert_eq!(next_event(&mut vm.events).await, QemuEvent::Resumed);

    let powerdown = Instant::now();
    vm.qmp.system_powerdown().await.expect("system_powerdown");
    let seen = events_until(&mut vm.events, QemuEvent::Exited).await;
    eprintln!("timing: system_powerdown→Exited {} ms", powerdown.elapsed().as_millis());
    assert!(seen.contains(&QemuEvent::Shutdown { guest_initiated: true }), "{seen:?}");
    assert!(!vireo_qemu::process_alive(vm.pid, vm.pid_start_ticks));
    assert!(!std::path::Path::new(&format!("/proc/{}", vm.pid)).exists(), "QEMU was not reaped");
    assert!(matches!(vm.qmp.query_status().await, Err(QemuError::QmpClosed)));
    assert_eq!(vm.events.recv().await, None, "Exited must be the last event");

    // Every command, reply and event went to the QMP log.
    let log = std::fs::read_to_string(paths.qmp_log()).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l["ts_ms"].as_u64().is_some()));
    assert!(lines.iter().any(|l| l["dir"] == "out" && l["msg"]["execute"] == "system_powerdown"));
    assert!(lines.iter().any(|l| l["dir"] == "in" && l["msg"]["event"] == "POWERDOWN"));
    assert!(lines.iter().any(|l| l["dir"] == "in" && l["msg"]["QMP"].is_object()));
}

#[tokio::test]
async fn kill_ends_the_vm_at_once() {
    let (_dir, paths) = runtime_dir();
    let mut vm = vireo_qemu::spawn(
        &qemu_binary(),
        &Launch::with_path_disks(&guest_spec("killed"), Accel::Tcg, &caps().await),
        &paths,
    )
    .await
    .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    vm.qmp.cont().await.expect("cont");
    assert!(vireo_qemu::process_alive(vm.pid, vm.pid_start_ticks));

    let killed = Instant::now();
    vireo_qemu::kill(vm.pid, vm.pid_start_ticks).expect("kill");
    events_until(&mut vm.events, QemuEvent::Exited).await;
    eprintln!("timing: kill→Exited {} ms", killed.elapsed().as_millis());
    assert!(!vireo_qemu::process_alive(vm.pid, vm.pid_start_ticks));
    // Killing a process that is gone is not an error.
    vireo_qemu::kill(vm.pid, vm.pid_start_ticks).expect("second kill");
}

#[tokio::test]
async fn reattaches_to_a_running_qemu() {
    let (_dir, paths) = runtime_dir();
    let mut vm = vireo_qemu::spawn(
        &qemu_binary(),
        &Launch::with_path_disks(&guest_spec("reattached"), Accel::Tcg, &caps().await),
        &paths,
    )
    .await
    .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let _console = boot_to_prompt(&mut vm).await;
    let (pid, ticks) = (vm.pid, vm.pid_start_ticks);
    assert!(vireo_qemu::is_vm_qemu(pid, &paths));
    assert!(!vireo_qemu::is_vm_qemu(pid, &RuntimePaths::new("/elsewhere".into())));
    // The daemon goes away: its connections close, QEMU keeps running.
    drop(vm);
    drop(_console);

    let reattached = Instant::now();
    let mut vm = vireo_qemu::reattach(pid, ticks, &paths).await.expect("reattach");
    eprintln!("timing: reattach {} ms", reattached.elapsed().as_millis());
    assert_eq!((vm.pid, vm.pid_start_ticks), (pid, ticks));
    let status = vm.qmp.query_status().await.expect("query-status after reattach");
    assert!(status.running, "{status:?}");
    let mut console = Console::new(take_console(&mut vm));
    console.send("echo vireo-$((40+2))\n").await;
    console.expect("vireo-42").await;

    vm.qmp.quit().await.expect("quit");
    let seen = events_until(&mut vm.events, QemuEvent::Exited).await;
    assert!(seen.contains(&QemuEvent::Shutdown { guest_initiated: false }), "{seen:?}");
    assert!(!vireo_qemu::process_alive(pid, ticks));
}

#[tokio::test]
async fn reattach_refuses_a_process_that_is_not_the_vms_qemu() {
    let (_dir, paths) = runtime_dir();
    let pid = std::process::id();
    let ticks = vireo_qemu::process_start_ticks(pid).unwrap();
    let err = vireo_qemu::reattach(pid, ticks, &paths).await.expect_err("must refuse");
    assert!(matches!(err, QemuError::NotOurProcess { .. }), "{err}");
    let err = vireo_qemu::reattach(pid, ticks + 1, &paths).await.expect_err("must refuse");
    assert!(matches!(err, QemuError::NotOurProcess { .. }), "{err}");
    let err = vireo_qemu::reattach(u32::MAX, ticks, &paths).await.expect_err("must refuse");
    assert!(matches!(err, QemuError::NotRunning { .. }), "{err}");
}

#[tokio::test]
async fn a_bad_kernel_path_fails_with_qemus_own_message() {
    let (_dir, paths) = runtime_dir();
    let mut spec = guest_spec("badkernel");
    spec.boot.kernel = Some("/nonexistent/vmlinuz".into());
    let err = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect_err("must fail");
    let message = err.to_string();
    assert!(matches!(err, QemuError::StartFailed { .. }), "{message}");
    // QEMU's own words: the exit was seen and its stderr read, not a timeout waited out.
    assert!(message.contains("could not open kernel file '/nonexistent/vmlinuz'"), "{message}");
}

#[tokio::test]
async fn disk_boot_argv_is_accepted_by_qemu() {
    let (dir, paths) = runtime_dir();
    let disk = dir.path().join("disk, with comma.raw");
    let seed = dir.path().join("seed.img");
    for file in [&disk, &seed] {
        std::fs::File::create(file).unwrap().set_len(1024 * 1024).unwrap();
    }
    let spec: vireo_api::VmSpec = serde_json::from_value(serde_json::json!({
        "name": "diskboot", "memory": "64MiB", "accel": "tcg",
        "disks": [{ "path": disk }, { "path": seed, "readonly": true }],
    }))
    .unwrap();
    let mut vm = vireo_qemu::spawn(&qemu_binary(), &Launch::with_path_disks(&spec, Accel::Tcg, &caps().await), &paths)
        .await
        .expect("spawn with disks");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    assert_eq!(vm.qmp.query_status().await.unwrap().status, "prelaunch");
    vm.qmp.quit().await.expect("quit");
    events_until(&mut vm.events, QemuEvent::Exited).await;
    assert!(!vireo_qemu::process_alive(vm.pid, vm.pid_start_ticks));
}

/// Set for the child copy of this test binary that plays a daemon which gets killed.
const HELPER_DIR_ENV: &str = "VIREO_QEMU_TEST_DAEMON_DIR";

/// Not a test of its own: the "daemon" of `qemu_survives_its_daemon_being_killed`.
/// It starts a guest, prints its identity and waits to be SIGKILLed.
#[tokio::test]
async fn helper_daemon_that_gets_killed() {
    let Some(dir) = std::env::var_os(HELPER_DIR_ENV) else {
        return;
    };
    let paths = RuntimePaths::new(dir.into());
    let mut vm = vireo_qemu::spawn(
        &qemu_binary(),
        &Launch::with_path_disks(&guest_spec("orphan"), Accel::Tcg, &caps().await),
        &paths,
    )
    .await
    .expect("spawn");
    let _guard = KillOnDrop { pid: vm.pid, pid_start_ticks: vm.pid_start_ticks };
    let _console = boot_to_prompt(&mut vm).await;
    println!("VIREO-HELPER {} {}", vm.pid, vm.pid_start_ticks);
    tokio::time::sleep(Duration::from_secs(600)).await;
}

#[tokio::test]
async fn qemu_survives_its_daemon_being_killed() {
    use tokio::io::AsyncBufReadExt;
    let (_dir, paths) = runtime_dir();
    let mut daemon = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_daemon_that_gets_killed", "--nocapture"])
        .env(HELPER_DIR_ENV, paths.dir())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the helper daemon");
    let mut lines = tokio::io::BufReader::new(daemon.stdout.take().unwrap()).lines();
    let identity = tokio::time::timeout(common::BOOT_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("VIREO-HELPER ") {
                return rest.to_string();
            }
        }
        panic!("the helper daemon ended without starting a guest");
    })
    .await
    .expect("helper daemon start-up");
    let (pid, ticks) = identity.split_once(' ').unwrap();
    let (pid, ticks): (u32, u64) = (pid.parse().unwrap(), ticks.parse().unwrap());
    let _guard = KillOnDrop { pid, pid_start_ticks: ticks };

    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    assert!(vireo_qemu::process_alive(pid, ticks), "QEMU died with its daemon");

    // QEMU is no child of ours now: its end is seen through the pidfd.
    let mut vm = vireo_qemu::reattach(pid, ticks, &paths).await.expect("reattach");
    assert!(vm.qmp.query_status().await.unwrap().running);
    let mut console = Console::new(take_console(&mut vm));
    console.send("echo orphan-$((6*7))\n").await;
    console.expect("orphan-42").await;
    vireo_qemu::kill(pid, ticks).expect("kill");
    let killed = Instant::now();
    events_until(&mut vm.events, QemuEvent::Exited).await;
    eprintln!("timing: kill→Exited of a reattached QEMU {} ms", killed.elapsed().as_millis());
    assert!(!vireo_qemu::process_alive(pid, ticks));
}
