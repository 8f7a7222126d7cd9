//! What /proc says about a process: memory, CPU time, parent, command line.

use std::time::Duration;

use procfs::process::{Process, Stat};

fn process(pid: u32) -> Option<Process> {
    Process::new(i32::try_from(pid).ok()?).ok()
}

fn stat(pid: u32) -> Option<Stat> {
    process(pid)?.stat().ok()
}

/// `VmRSS` of /proc/PID/status, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    process(pid)?.status().ok()?.vmrss
}

/// User + system CPU time of all the process's threads so far (clock-tick resolution, usually 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// User and system CPU time of all the process's threads so far, apart.
pub fn cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let stat = stat(pid)?;
    let per_second = procfs::ticks_per_second().max(1) as f64;
    let ticks = |t: u64| Duration::from_secs_f64(t as f64 / per_second);
    Some((ticks(stat.utime), ticks(stat.stime)))
}

/// The process's command line (/proc/PID/cmdline), the program first; empty if it is gone.
pub fn cmdline(pid: u32) -> Vec<String> {
    process(pid).and_then(|p| p.cmdline().ok()).unwrap_or_default()
}

/// True once the process has ended: gone from /proc, or a zombie (`Z`) or dead (`X`) waiting for its parent.
pub fn has_exited(pid: u32) -> bool {
    stat(pid).is_none_or(|stat| matches!(stat.state, 'Z' | 'X' | 'x'))
}

pub fn parent_pid(pid: u32) -> Option<u32> {
    u32::try_from(stat(pid)?.ppid).ok()
}

/// The process's session.
pub fn session_id(pid: u32) -> Option<u32> {
    u32::try_from(stat(pid)?.session).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_visible() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(cpu_time(me).is_some());
        assert!(cpu_split(me).is_some());
        assert_eq!(parent_pid(me), Some(nix::unistd::getppid().as_raw() as u32));
        assert_eq!(session_id(me), nix::unistd::getsid(None).ok().map(|s| s.as_raw() as u32));
        assert!(!has_exited(me));
        assert!(has_exited(u32::MAX), "no such process");
        assert_eq!(cmdline(me).first(), std::env::args().next().as_ref());
        assert!(cmdline(u32::MAX).is_empty());
    }
}
