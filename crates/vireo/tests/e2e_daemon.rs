//! End-to-end behaviour of the daemon itself: crash recovery, concurrency, TCP auth.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use support::*;
use vireo_api::{StopRequest, VmState};
use vireo_client::{Client, Endpoint};

#[tokio::test(flavor = "multi_thread")]
async fn vms_survive_a_daemon_killed_with_sigkill() {
    let mut daemon = Daemon::start();
    let client = daemon.client();
    for name in ["keep1", "keep2", "idle"] {
        client.create_vm(&guest_spec(name)).await.unwrap();
    }
    let pids: Vec<Option<u32>> =
        vec![client.start_vm("keep1").await.unwrap().pid, client.start_vm("keep2").await.unwrap().pid];
    for name in ["keep1", "keep2"] {
        wait_for_log(&client, name, MARKER, BOOT_TIMEOUT).await;
    }
    let before = client.list_vms().await.unwrap();

    daemon.kill9();
    daemon.spawn();

    let client = daemon.client();
    let after = client.list_vms().await.unwrap();
    assert_eq!(after.len(), 3, "nothing lost from the database");
    for (old, new) in before.iter().zip(&after) {
        assert_eq!(old.name, new.name);
        assert_eq!(old.spec, new.spec);
        assert_eq!(old.created_at, new.created_at);
    }
    for (name, pid) in ["keep1", "keep2"].iter().zip(pids) {
        let vm = client.get_vm(name).await.unwrap();
        assert_eq!(vm.state, VmState::Running, "{name} still running after the daemon restart");
        assert_eq!(vm.pid, pid, "{name} is the same QEMU, not a new one");
        // Still manageable: the console answers and lifecycle operations work.
        assert_eq!(run_in_guest(&client, name, "echo alive-$((1+1))").await, "alive-2");
    }
    assert_eq!(client.get_vm("idle").await.unwrap().state, VmState::Stopped);
    assert_eq!(client.pause_vm("keep1").await.unwrap().state, VmState::Paused);
    assert_eq!(client.resume_vm("keep1").await.unwrap().state, VmState::Running);
    let stopped = client.stop_vm("keep1", &StopRequest::default()).await.unwrap();
    assert_eq!(stopped.state, VmState::Stopped);
    client.stop_vm("keep2", &StopRequest { force: true, timeout_secs: None }).await.unwrap();
    assert_eq!(client.get_vm("keep2").await.unwrap().state, VmState::Stopped);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vm_that_died_while_the_daemon_was_down_is_crashed() {
    let mut daemon = Daemon::start();
    let client = daemon.client();
    client.create_vm(&guest_spec("orphan")).await.unwrap();
    let pid = client.start_vm("orphan").await.unwrap().pid.expect("pid");
    daemon.kill9();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    daemon.spawn();
    let vm = daemon.client().get_vm("orphan").await.unwrap();
    assert_eq!(vm.state, VmState::Crashed);
    assert!(vm.last_error.unwrap_or_default().contains("daemon was not running"));
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_vms_started_concurrently_all_run() {
    let daemon = Daemon::start();
    let client = daemon.client();
    let names: Vec<String> = (0..10).map(|i| format!("many{i}")).collect();
    for name in &names {
        client.create_vm(&guest_spec(name)).await.unwrap();
    }
    let starts = names.iter().map(|name| {
        let client = client.clone();
        async move { client.start_vm(name).await }
    });
    for result in join_all(starts).await {
        assert_eq!(result.expect("start").state, VmState::Running);
    }
    let running = client.list_vms().await.unwrap().iter().filter(|vm| vm.state == VmState::Running).count();
    assert_eq!(running, 10);
    for name in &names {
        wait_for_log(&client, name, MARKER, Duration::from_secs(300)).await;
    }
    let stops = names.iter().map(|name| {
        let client = client.clone();
        async move { client.stop_vm(name, &StopRequest { force: true, timeout_secs: None }).await }
    });
    for result in join_all(stops).await {
        assert_eq!(result.expect("stop").state, VmState::Stopped);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tcp_needs_the_bearer_token() {
    let daemon = Daemon::start_with_tcp(true);
    let url = format!("http://{}", daemon.tcp.unwrap());
    let anonymous = Client::new(Endpoint::Tcp { url: url.clone(), token: "wrong".into() });
    let err = anonymous.list_vms().await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::Unauthorized), "{err}");
    let err = anonymous.create_vm(&guest_spec("sneaky")).await.unwrap_err();
    assert_eq!(err.api().map(|e| e.code), Some(vireo_api::ErrorCode::Unauthorized));
    assert!(daemon.client().list_vms().await.unwrap().is_empty(), "the refused request changed nothing");

    let authorised = Client::new(Endpoint::Tcp { url, token: daemon.token() });
    authorised.create_vm(&guest_spec("legit")).await.unwrap();
    assert_eq!(authorised.list_vms().await.unwrap().len(), 1);
    let openapi = authorised.openapi().await.unwrap();
    assert!(openapi["paths"]["/v1/vms"].is_object());

    // The token is private and never printed by the daemon.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(daemon.dir.path().join("api-token")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!daemon.log().contains(&daemon.token()));
    let socket_mode = std::fs::metadata(&daemon.socket).unwrap().permissions().mode();
    assert_eq!(socket_mode & 0o077, 0, "socket is private to its owner");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_check_explains_the_accelerator() {
    let daemon = Daemon::start();
    let output = daemon.cli_ok(&["host", "check", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_str(&output).unwrap();
    let accel = report["accel"].as_str().unwrap();
    assert!(accel == "tcg" || accel == "kvm");
    assert!(!report["accel_reason"].as_str().unwrap().is_empty());
    if !std::path::Path::new("/sys/module/kvm_intel").exists() && !std::path::Path::new("/sys/module/kvm_amd").exists()
    {
        assert_eq!(accel, "tcg", "without kvm_intel/kvm_amd, auto must pick TCG");
    }
    assert!(report["items"].as_array().unwrap().iter().any(|i| i["name"].as_str().unwrap().contains("qemu")));
}

#[tokio::test(flavor = "multi_thread")]
async fn host_show_reports_this_host() {
    let daemon = Daemon::start();
    let host: vireo_api::HostInfo = serde_json::from_str(&daemon.cli_ok(&["host", "show", "-o", "json"])).unwrap();
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(host.hostname, hostname.trim());
    assert_eq!(host.version, env!("CARGO_PKG_VERSION"));
    assert!(host.cpus >= 1);
    assert!(host.memory_total_bytes > 0 && host.memory_available_bytes <= host.memory_total_bytes, "{host:?}");
    assert!(host.uptime_secs > 0);
    assert!(host.qemu_version.starts_with("QEMU emulator version"), "{host:?}");
    let text = daemon.cli_ok(&["host", "show"]);
    assert!(text.contains(&format!("hostname:     {}", host.hostname)), "{text}");
}
