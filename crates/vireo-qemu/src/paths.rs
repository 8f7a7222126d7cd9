//! The layout of a VM's runtime directory.

use std::path::{Path, PathBuf};

/// Where a running VM keeps its sockets, pid file and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimePaths {
    dir: PathBuf,
}

impl RuntimePaths {
    pub fn new(dir: PathBuf) -> Self {
        RuntimePaths { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// QMP control socket (QEMU listens on it).
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }

    /// The guest's serial console (QEMU listens on it).
    pub fn console_socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }

    /// The VNC server of a VM with a display (QEMU creates and listens on it itself;
    /// the directory's 0700 is what guards it: VNC on it has no password).
    pub fn vnc_socket(&self) -> PathBuf {
        self.dir.join("vnc.sock")
    }

    /// Written by QEMU itself (`-pidfile`).
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }

    /// Every QMP command, reply and event, one JSON line each.
    pub fn qmp_log(&self) -> PathBuf {
        self.dir.join("qmp.log")
    }

    /// Where `save_to_file` listens for QEMU's migration stream while saving.
    pub fn migrate_socket(&self) -> PathBuf {
        self.dir.join("migrate.sock")
    }

    /// QEMU's stderr.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
}
