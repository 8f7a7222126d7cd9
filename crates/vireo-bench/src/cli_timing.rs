//! Timing a command-line tool as a user runs it (`vireo vm start`, `virsh destroy`): spawn →
//! exit, and for a command that ends a QEMU, how long after QEMU's actual exit it returned.
//!
//! QEMU's exit is taken from a pidfd opened on its pid before the command is spawned: a
//! thread blocks in poll(2) on it and reads the monotonic clock when it turns readable, which
//! the kernel does as the process exits (before anyone reaps it). The command's return is
//! the same clock read when waitpid(2) on the command returns.

use std::os::fd::OwnedFd;
use std::process::{Command, Output};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use serde::Serialize;

use crate::stats::ms;

/// How long a QEMU may take to exit once a destroy was sent.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `command` (off the runtime) and times spawn → exit; fails unless it succeeds.
pub async fn timed(command: Command) -> anyhow::Result<(f64, Output)> {
    let (start, returned, output) = run(command).await?;
    Ok((ms(returned - start), output))
}

/// A command that ends a QEMU, timed.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Destroy {
    /// Spawn → exit of the command.
    pub command_ms: f64,
    /// Spawn of the command → QEMU's exit.
    pub qemu_exit_ms: f64,
    /// QEMU's exit → the command's exit: what the tool still does once QEMU is gone.
    pub after_exit_ms: f64,
}

/// Runs `command`, which is to end the QEMU `pid`, and times it against QEMU's exit.
pub async fn timed_destroy(command: Command, pid: u32) -> anyhow::Result<Destroy> {
    let exit = ExitWatch::open(pid)?;
    let (start, returned, _) = run(command).await?;
    let exited = tokio::task::spawn_blocking(move || exit.wait()).await??;
    Ok(Destroy {
        command_ms: ms(returned - start),
        qemu_exit_ms: ms(exited.saturating_duration_since(start)),
        after_exit_ms: ms(returned.saturating_duration_since(exited)),
    })
}

/// Spawns `command` on a blocking thread; returns when it was spawned and when it exited.
async fn run(mut command: Command) -> anyhow::Result<(Instant, Instant, Output)> {
    let what = format!("{:?}", command.get_program());
    let (start, returned, output) = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let output = command.output();
        (start, Instant::now(), output)
    })
    .await?;
    let output = output.with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok((start, returned, output))
}

/// The moment a process exits, noted by a thread polling its pidfd.
struct ExitWatch {
    thread: JoinHandle<std::io::Result<Option<Instant>>>,
}

impl ExitWatch {
    fn open(pid: u32) -> anyhow::Result<ExitWatch> {
        let raw = i32::try_from(pid).ok().and_then(Pid::from_raw).context("not a pid")?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).with_context(|| format!("cannot open a pidfd on {pid}"))?;
        let thread = std::thread::spawn(move || wait_readable(&pidfd));
        Ok(ExitWatch { thread })
    }

    fn wait(self) -> anyhow::Result<Instant> {
        match self.thread.join() {
            Ok(Ok(Some(at))) => Ok(at),
            Ok(Ok(None)) => bail!("QEMU did not exit within {EXIT_TIMEOUT:?}"),
            Ok(Err(err)) => Err(err).context("cannot poll QEMU's pidfd"),
            Err(_) => bail!("the pidfd thread panicked"),
        }
    }
}

/// The monotonic time at which `pidfd` turned readable (its process exited); `None` after [`EXIT_TIMEOUT`].
fn wait_readable(pidfd: &OwnedFd) -> std::io::Result<Option<Instant>> {
    let timeout = Timespec { tv_sec: EXIT_TIMEOUT.as_secs() as _, tv_nsec: 0 };
    loop {
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(Instant::now())),
            Err(rustix::io::Errno::INTR) => continue,
            Err(errno) => return Err(errno.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_exit_comes_before_the_return_of_the_command_that_caused_it() {
        let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        // Like a destroy, the command returns a while after the process is gone.
        let mut kill = Command::new("sh");
        kill.args(["-c", &format!("kill -KILL {}; sleep 0.1", sleeper.id())]);
        let destroy = timed_destroy(kill, sleeper.id()).await.unwrap();
        sleeper.wait().unwrap();
        assert!(destroy.after_exit_ms >= 100.0, "{destroy:?}");
        assert!((destroy.qemu_exit_ms + destroy.after_exit_ms - destroy.command_ms).abs() < 0.01, "{destroy:?}");
        let failing = timed(Command::new("false")).await.unwrap_err();
        assert!(failing.to_string().contains("\"false\" failed"), "{failing}");
    }
}
