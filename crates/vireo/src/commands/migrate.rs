//! `vireo vm migrate` and `vireo vm migrate-cancel`: start a live migration on
//! the source daemon and follow it to the end with a progress bar.

use std::time::Duration;

use anyhow::bail;
use vireo_api::{MigrateRequest, MigrationPhase, MigrationStatus};
use vireo_client::Client;

use crate::cli::MigrateArgs;
use crate::output;
use crate::progress::Bar;

/// How often a waiting `vm migrate` reads the status.
const POLL: Duration = Duration::from_millis(200);

pub async fn migrate(client: &Client, args: MigrateArgs) -> anyhow::Result<()> {
    let request = MigrateRequest {
        to: args.to,
        to_token: args.to_token,
        copy_storage: args.copy_storage,
        max_downtime_ms: args.max_downtime,
        bandwidth_mib: args.bandwidth,
        postcopy: args.postcopy,
    };
    let started = client.migrate_vm(&args.name, &request).await?;
    if args.no_wait {
        return output::print(&format!(
            "{}: migrating to {} (follow with `vireo vm show {}`)\n",
            args.name, started.destination, args.name
        ));
    }
    let status = follow(client, &args.name).await?;
    match status.phase {
        Some(MigrationPhase::Completed) => output::print(&format!("{}\n", completed_line(&status))),
        phase => bail!(
            "migration of {} {}: {}; the VM is still on this host",
            args.name,
            phase.map(MigrationPhase::as_str).unwrap_or("ended"),
            status.error.as_deref().unwrap_or("no reason given")
        ),
    }
}

/// Polls the status until the migration ends; Ctrl-C cancels it (the VM stays here).
async fn follow(client: &Client, name: &str) -> anyhow::Result<MigrationStatus> {
    let bar = Bar::new(format!("{name}: preparing"));
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut cancelled = false;
    loop {
        let status = client.migration_status(name).await?;
        if status.phase.is_some_and(MigrationPhase::is_final) {
            return Ok(status);
        }
        bar.set_message(output::migration_progress(&status));
        bar.set(fraction_done(&status));
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = &mut interrupt, if !cancelled => {
                cancelled = true;
                if let Err(err) = client.cancel_migration(name).await {
                    eprintln!("cannot cancel: {err}");
                }
            }
        }
    }
}

/// How far the current phase is: the disk copy, then memory.
fn fraction_done(status: &MigrationStatus) -> f64 {
    let (done, total) = match status.phase {
        Some(MigrationPhase::CopyingDisks) => (status.disk_copied_bytes, status.disk_total_bytes),
        _ => (status.memory_transferred_bytes, status.memory_transferred_bytes + status.memory_remaining_bytes),
    };
    if total == 0 { 0.0 } else { done as f64 / total as f64 }
}

/// `web1: migrated to http://… (downtime 12 ms + hand-over 3 ms, total 812 ms)`
fn completed_line(status: &MigrationStatus) -> String {
    let ms = |value: Option<u64>| value.map(|v| format!("{v} ms")).unwrap_or_else(|| "?".into());
    format!(
        "{}: migrated to {} (downtime {} + hand-over {}, total {})",
        status.vm,
        status.destination,
        ms(status.downtime_ms),
        ms(status.handover_ms),
        ms(status.total_time_ms)
    )
}

pub async fn cancel(client: &Client, name: &str) -> anyhow::Result<()> {
    client.cancel_migration(name).await?;
    output::print(&format!("{name}: cancelling the migration; the VM stays here\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: MigrationPhase) -> MigrationStatus {
        MigrationStatus { vm: "web1".into(), phase: Some(phase), ..MigrationStatus::default() }
    }

    #[test]
    fn progress_follows_the_phase() {
        let mut disks = status(MigrationPhase::CopyingDisks);
        disks.disk_total_bytes = 4 << 20;
        disks.disk_copied_bytes = 1 << 20;
        assert_eq!(fraction_done(&disks), 0.25);
        assert_eq!(output::migration_progress(&disks), "web1: copying_disks, disks 1/4 MiB");

        let mut memory = status(MigrationPhase::Migrating);
        memory.memory_total_bytes = 256 << 20;
        memory.memory_transferred_bytes = 96 << 20;
        memory.memory_remaining_bytes = 32 << 20;
        memory.cpu_throttle_percent = 30;
        memory.expected_downtime_ms = Some(12);
        assert_eq!(fraction_done(&memory), 0.75);
        assert_eq!(
            output::migration_progress(&memory),
            "web1: migrating, 96 MiB sent, 32 MiB left, dirty 0 MiB/s, vCPUs throttled 30%, downtime ~12 ms"
        );
        assert_eq!(fraction_done(&status(MigrationPhase::Preparing)), 0.0);
    }

    #[test]
    fn a_completed_migration_reports_qemus_figures() {
        let mut done = status(MigrationPhase::Completed);
        done.destination = "http://10.0.0.2:7070".into();
        done.downtime_ms = Some(12);
        done.handover_ms = Some(3);
        assert_eq!(
            completed_line(&done),
            "web1: migrated to http://10.0.0.2:7070 (downtime 12 ms + hand-over 3 ms, total ?)"
        );
    }
}
