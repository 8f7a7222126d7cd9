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
    let fields = stat_fields(pid)?;
    // Fields 14 and 15 of /proc/PID/stat; `fields` starts at field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let per_second = sysconf(SysconfVar::CLK_TCK).ok().flatten().filter(|t| *t > 0)? as u64;
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Field 4 of /proc/PID/stat.
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
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
        assert_eq!(parent_pid(me), Some(nix::unistd::getppid().as_raw() as u32));
    }
}
