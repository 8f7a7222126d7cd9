//! What /proc says about a process: memory, CPU time, parent.

use std::time::Duration;

use nix::unistd::{SysconfVar, sysconf};

/// `VmRSS` of /proc/PID/status, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rest = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    rest.trim().trim_end_matches("kB").trim().parse().ok()
}

/// User + system CPU time of all the process's threads so far (clock-tick resolution, usually 10 ms).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    cpu_split(pid).map(|(user, system)| user + system)
}

/// User and system CPU time of all the process's threads so far, apart.
pub fn cpu_split(pid: u32) -> Option<(Duration, Duration)> {
    let fields = stat_fields(pid)?;
    let per_second = sysconf(SysconfVar::CLK_TCK).ok().flatten().filter(|t| *t > 0)? as f64;
    // Fields 14 and 15 of /proc/PID/stat; `fields` starts at field 3.
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok().map(|t| Duration::from_secs_f64(t as f64 / per_second));
    Some((ticks(11)?, ticks(12)?))
}

/// The process's command line (/proc/PID/cmdline), the program first; empty if it is gone.
pub fn cmdline(pid: u32) -> Vec<String> {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return Vec::new() };
    raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// True once the process has ended: gone from /proc, or a zombie (`Z`) or dead (`X`) waiting for its parent.
pub fn has_exited(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|fields| matches!(fields.first().map(String::as_str), Some("Z" | "X") | None))
}

/// Field 4 of /proc/PID/stat.
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// Field 6 of /proc/PID/stat: the process's session.
pub fn session_id(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(3)?.parse().ok()
}

/// The fields of /proc/PID/stat from field 3 on: what follows the parenthesised
/// command name, which may itself contain spaces and parentheses.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    Some(after_comm.split_whitespace().map(String::from).collect())
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
