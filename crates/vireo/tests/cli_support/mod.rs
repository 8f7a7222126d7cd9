//! Shared by the CLI tests that need no daemon: run the real binary against a socket that does not exist.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Runs `vireo --socket <missing socket> ARGS`: a request would fail naming that socket.
pub fn vireo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .arg("--socket")
        .arg(socket(dir))
        .args(args)
        .env_remove("VIREO_SOCKET")
        .env_remove("VIREO_URL")
        .env_remove("VIREO_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("the vireo binary runs")
}

pub fn socket(dir: &Path) -> String {
    dir.join("vireo.sock").display().to_string()
}

/// The single `error: ...` line of a command that failed locally (exit 1, the daemon never asked).
pub fn local_error(dir: &Path, args: &[&str]) -> String {
    let output = vireo(dir, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: exactly one line expected: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{args:?}: {stderr:?}");
    assert!(!stderr.contains(&socket(dir)), "{args:?}: the daemon must not be contacted: {stderr}");
    assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
    stderr.trim_end().to_string()
}
