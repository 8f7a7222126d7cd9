//! The real `vireo` binary on failures that need no daemon: one `error:` line, exit code 1.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn vireo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(args)
        .env_remove("VIREO_SOCKET")
        .env_remove("VIREO_URL")
        .env_remove("VIREO_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("the vireo binary runs")
}

/// The single stderr line of a failed command, checked to be `error: ...` with exit code 1.
fn single_error(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "exactly one line expected: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(!stderr.contains("panicked"), "{stderr:?}");
    stderr.trim_end().to_string()
}

fn missing_socket(dir: &Path) -> String {
    dir.join("vireo.sock").display().to_string()
}

#[test]
fn an_unreachable_daemon_is_one_line_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let socket = missing_socket(dir.path());
    for args in [&["vm", "list"][..], &["vm", "start", "web1"], &["host", "check"], &["vm", "console", "web1"]] {
        let output = vireo(&[&["--socket", &socket], args].concat());
        let line = single_error(&output);
        assert!(line.contains(&socket), "{line}");
        assert!(line.contains("vireo serve"), "{line}");
    }
}

#[test]
fn the_socket_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let socket = missing_socket(dir.path());
    let output = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["vm", "list"])
        .env("VIREO_SOCKET", &socket)
        .env_remove("VIREO_URL")
        .output()
        .unwrap();
    assert!(single_error(&output).contains(&socket));
}

#[test]
fn a_bad_memory_size_is_refused_before_contacting_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("bzImage");
    std::fs::write(&kernel, b"kernel").unwrap();
    let socket = missing_socket(dir.path());
    for memory in ["lots", "1MiB", "3TiB"] {
        let kernel = kernel.to_str().unwrap();
        let output = vireo(&["--socket", &socket, "vm", "create", "web1", "--memory", memory, "--kernel", kernel]);
        let line = single_error(&output);
        assert!(line.starts_with("error: --memory: "), "{line}");
        assert!(!line.contains(&socket), "the daemon must not be contacted: {line}");
    }
}

#[test]
fn a_missing_kernel_is_refused_locally() {
    let dir = tempfile::tempdir().unwrap();
    let socket = missing_socket(dir.path());
    let output =
        vireo(&["--socket", &socket, "vm", "create", "web1", "--memory", "64MiB", "--kernel", "/no/such/bzImage"]);
    let line = single_error(&output);
    assert!(line.contains("--kernel: /no/such/bzImage does not exist"), "{line}");
}

#[test]
fn an_unknown_key_in_a_spec_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.toml");
    std::fs::write(&file, "memory = \"64MiB\"\nvcpu = 2\n[boot]\nkernel = \"/k\"\n").unwrap();
    let socket = missing_socket(dir.path());
    let output = vireo(&["--socket", &socket, "vm", "create", "web1", "--file", file.to_str().unwrap()]);
    let line = single_error(&output);
    assert!(line.contains("spec.toml: vcpu: unknown field `vcpu`"), "{line}");
}

#[test]
fn a_spec_file_naming_another_vm_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.toml");
    std::fs::write(&file, "name = \"db\"\nmemory = \"64MiB\"\n[boot]\nkernel = \"/k\"\n").unwrap();
    let output = vireo(&["vm", "create", "web1", "--file", file.to_str().unwrap()]);
    assert!(single_error(&output).contains("name: is 'db'"));
}

#[test]
fn url_without_a_token_is_refused() {
    let line = single_error(&vireo(&["--url", "http://127.0.0.1:1", "vm", "list"]));
    assert!(line.contains("--url needs the API token"), "{line}");
}

#[test]
fn completions_print_a_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let output = vireo(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains("vireo"), "{shell}");
    }
    let bash = vireo(&["completions", "bash"]);
    assert!(String::from_utf8_lossy(&bash.stdout).contains("complete -F"));
}

#[test]
fn usage_errors_keep_clap_exit_code() {
    let output = vireo(&["vm", "frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
    let output = vireo(&["vm", "create", "web1"]);
    assert_eq!(output.status.code(), Some(2), "--memory or --file is required");
    assert!(vireo(&["--help"]).status.success());
}
