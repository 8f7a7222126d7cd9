//! End-to-end lifecycle of real TCG guests through the CLI and the API.

mod support;

use std::time::Duration;

use support::*;
use vireo_api::{StopRequest, VmState};

#[tokio::test(flavor = "multi_thread")]
async fn create_start_console_stop_delete() {
    let daemon = Daemon::start();
    let (kernel, initrd) = guest();
    let (kernel, initrd) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());
    daemon.cli_ok(&[
        "vm",
        "create",
        "life",
        "--vcpus",
        "1",
        "--memory",
        "128MiB",
        "--kernel",
        kernel,
        "--initrd",
        initrd,
        "--cmdline",
        "console=ttyS0 quiet panic=-1",
    ]);
    let listed = json_list(&daemon.cli_ok(&["vm", "list", "-o", "json"]));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "life");
    assert_eq!(listed[0]["state"], "stopped");

    daemon.cli_ok(&["vm", "start", "life"]);
    let client = daemon.client();
    let vm = client.get_vm("life").await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_eq!(vm.accel.as_deref(), Some("tcg"), "this host has no hardware KVM");
    wait_for_log(&client, "life", MARKER, BOOT_TIMEOUT).await;
    let logs = daemon.cli_ok(&["vm", "logs", "life"]);
    assert!(logs.contains(MARKER), "vm logs shows the marker");

    let answer = run_in_guest(&client, "life", "echo $((6*7))").await;
    assert_eq!(answer, "42");

    // Wrong-state requests are refused and change nothing.
    let err = client.start_vm("life").await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::InvalidState));
    let err = client.delete_vm("life").await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::InvalidState));
    let output = daemon.cli(&["vm", "delete", "life"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr}");
    assert!(stderr.contains("running"), "{stderr}");
    assert_eq!(client.get_vm("life").await.unwrap().state, VmState::Running);

    // Graceful stop: the guest powers off on the ACPI power button.
    let pid = daemon.qemu_pid("life").expect("qemu pid");
    daemon.cli_ok(&["vm", "stop", "life", "--timeout", "60"]);
    let vm = client.get_vm("life").await.unwrap();
    assert_eq!(vm.state, VmState::Stopped);
    assert_eq!(vm.pid, None);
    assert_eq!(vm.last_error, None);
    let log = std::fs::read_to_string(daemon.dir.path().join("vms/life/qmp.log")).unwrap();
    assert!(log.contains("system_powerdown"), "graceful stop used the power button");
    assert!(log.contains("\"guest\":true"), "the guest itself powered off: {log}");
    assert!(!std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || is_zombie(pid));

    daemon.cli_ok(&["vm", "delete", "life"]);
    assert!(json_list(&daemon.cli_ok(&["vm", "list", "-o", "json"])).is_empty());
    assert!(!daemon.dir.path().join("vms/life").exists());
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

fn guest_uptime(text: &str) -> f64 {
    text.split_whitespace().next().and_then(|t| t.parse().ok()).unwrap_or_else(|| panic!("no uptime in {text:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_freezes_the_guest_and_resume_continues() {
    let daemon = Daemon::start();
    let client = daemon.client();
    client.create_vm(&guest_spec("pauser")).await.unwrap();
    client.start_vm("pauser").await.unwrap();
    wait_for_log(&client, "pauser", MARKER, BOOT_TIMEOUT).await;

    let host_start = std::time::Instant::now();
    let before = guest_uptime(&run_in_guest(&client, "pauser", "cat /proc/uptime").await);
    assert_eq!(client.pause_vm("pauser").await.unwrap().state, VmState::Paused);
    assert_eq!(client.get_vm("pauser").await.unwrap().state, VmState::Paused);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(client.resume_vm("pauser").await.unwrap().state, VmState::Running);
    let after = guest_uptime(&run_in_guest(&client, "pauser", "cat /proc/uptime").await);
    let host_elapsed = host_start.elapsed().as_secs_f64();
    // The guest's clock must not have counted the 3 s pause. Measured against the host's
    // own time across both readings, so a slow console on a loaded machine cannot fail it.
    let advanced = after - before;
    assert!(
        advanced < host_elapsed - 1.5,
        "guest uptime advanced {advanced:.2} s in {host_elapsed:.2} s of host time that included a 3 s pause"
    );
    assert!(after > before);

    let err = client.resume_vm("pauser").await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::InvalidState));
    client.stop_vm("pauser", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_boots_a_new_qemu() {
    let daemon = Daemon::start();
    let client = daemon.client();
    client.create_vm(&guest_spec("again")).await.unwrap();
    let first = client.start_vm("again").await.unwrap().pid;
    wait_for_log(&client, "again", MARKER, BOOT_TIMEOUT).await;
    let vm = client.restart_vm("again").await.unwrap();
    assert_eq!(vm.state, VmState::Running);
    assert_ne!(vm.pid, first, "restart runs a fresh QEMU");
    // The second boot's marker follows the first in the same bounded log.
    wait_for_log_count(&client, "again", MARKER, 2, BOOT_TIMEOUT).await;
    client.stop_vm("again", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_qemu_is_detected_as_crashed() {
    let daemon = Daemon::start();
    let client = daemon.client();
    client.create_vm(&guest_spec("victim")).await.unwrap();
    let pid = client.start_vm("victim").await.unwrap().pid.expect("pid");
    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    wait_for_state(&client, "victim", VmState::Crashed, Duration::from_secs(60)).await;
    let vm = client.get_vm("victim").await.unwrap();
    assert_eq!(vm.pid, None);
    assert!(vm.last_error.as_deref().unwrap_or_default().contains("unexpectedly"), "{vm:?}");
    // A crashed VM can be started again.
    client.start_vm("victim").await.unwrap();
    wait_for_log(&client, "victim", MARKER, BOOT_TIMEOUT).await;
    client.stop_vm("victim", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    assert_eq!(client.get_vm("victim").await.unwrap().state, VmState::Stopped);
}

#[tokio::test(flavor = "multi_thread")]
async fn force_stop_rescues_a_hanging_graceful_stop() {
    let daemon = Daemon::start();
    let client = daemon.client();
    client.create_vm(&guest_spec("frozen")).await.unwrap();
    let pid = client.start_vm("frozen").await.unwrap().pid.expect("pid");
    wait_for_log(&client, "frozen", MARKER, BOOT_TIMEOUT).await;
    // A frozen QEMU answers nothing: the graceful stop hangs in `stopping`.
    std::process::Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
    let graceful = {
        let client = client.clone();
        tokio::spawn(
            async move { client.stop_vm("frozen", &StopRequest { force: false, timeout_secs: Some(300) }).await },
        )
    };
    wait_for_state(&client, "frozen", VmState::Stopping, Duration::from_secs(60)).await;
    let forced = client.stop_vm("frozen", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    assert_eq!(forced.state, VmState::Stopped);
    let graceful = graceful.await.unwrap().unwrap();
    assert_eq!(graceful.state, VmState::Stopped);
    assert_eq!(client.get_vm("frozen").await.unwrap().pid, None);
    // Nothing left to stop: a second forced stop does not fit the state.
    let err = client.stop_vm("frozen", &StopRequest { force: true, timeout_secs: None }).await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::InvalidState));
}

/// The default start unpacks the kernel for its PVH entry and leaves legacy hardware out;
/// the spec can ask for the kernel as given, SeaBIOS and the HPET back.
#[tokio::test(flavor = "multi_thread")]
async fn boot_entry_and_machine_follow_the_spec() {
    let daemon = Daemon::start();
    let client = daemon.client();
    let (kernel, initrd) = guest();
    let (kernel, initrd) = (kernel.to_str().unwrap(), initrd.to_str().unwrap());
    let common = ["--memory", "128MiB", "--kernel", kernel, "--initrd", initrd, "--cmdline", "console=ttyS0 quiet"];
    daemon.cli_ok(&[&["vm", "create", "lean"], &common[..]].concat());
    let legacy = ["--no-pvh", "--firmware", "seabios", "--legacy", "hpet,ps2", "--hotplug-ports", "2"];
    daemon.cli_ok(&[&["vm", "create", "legacy"], &common[..], &legacy[..]].concat());
    for vm in ["lean", "legacy"] {
        daemon.cli_ok(&["vm", "start", vm]);
    }

    let lean: serde_json::Value = serde_json::from_str(&daemon.cli_ok(&["vm", "show", "lean", "-o", "json"])).unwrap();
    assert_eq!(lean["boot"]["entry"], "pvh", "{lean}");
    assert_eq!(lean["boot"]["firmware"], "qboot", "{lean}");
    let unpacked = std::path::PathBuf::from(lean["boot"]["kernel"].as_str().expect("unpacked kernel path"));
    assert!(unpacked.starts_with(daemon.dir.path().join("kernels")), "{}", unpacked.display());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&unpacked).unwrap().permissions().mode() & 0o777, 0o600);
    let text = daemon.cli_ok(&["vm", "show", "legacy"]);
    assert!(text.contains("boot:         linux entry, seabios firmware\n"), "{text}");
    assert!(text.contains("machine:      firmware seabios, legacy hardware: hpet, ps2, hot-plug ports: 2\n"), "{text}");

    // What the guests see: the HPET only where the spec asked for it, and the hot-plug ports (slot 0x1c) it asked for.
    for vm in ["lean", "legacy"] {
        wait_for_log(&client, vm, MARKER, BOOT_TIMEOUT).await;
    }
    let clocksources = "cat /sys/devices/system/clocksource/clocksource0/available_clocksource";
    let lean_clocks = run_in_guest(&client, "lean", clocksources).await;
    let legacy_clocks = run_in_guest(&client, "legacy", clocksources).await;
    assert!(!lean_clocks.contains("hpet"), "lean guest: {lean_clocks}");
    assert!(legacy_clocks.contains("hpet"), "legacy guest: {legacy_clocks}");
    let ports = "ls /sys/bus/pci/devices | grep -c 0000:00:1c";
    assert_eq!(run_in_guest(&client, "lean", ports).await.trim(), "4");
    assert_eq!(run_in_guest(&client, "legacy", ports).await.trim(), "2");
    for vm in ["lean", "legacy"] {
        client.stop_vm(vm, &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    }
}
