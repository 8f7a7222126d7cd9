//! `vireo snapshot ...`

use vireo_api::SnapshotCreate;
use vireo_client::{Client, Endpoint};

use crate::cli::{OutputFormat, SnapshotCommand};
use crate::output;
use crate::progress;

pub async fn run(command: SnapshotCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let client = Client::new(endpoint);
    match command {
        SnapshotCommand::Create { vm, name, disk_only } => {
            vireo_core::spec::validate_name(&name).map_err(|reason| anyhow::anyhow!("snapshot name {reason}"))?;
            let request = SnapshotCreate { name, disk_only };
            let snapshot = progress::spin(format!("snapshotting {vm}"), client.create_snapshot(&vm, &request)).await?;
            let kind = output::snapshot_kind(snapshot.kind);
            output::print(&format!("{}: snapshot {} created ({kind})\n", snapshot.vm, snapshot.name))
        }
        SnapshotCommand::List { vm, output } => {
            let snapshots = client.list_snapshots(&vm).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&snapshots),
                OutputFormat::Table => output::print(&output::snapshot_table(&snapshots)),
            }
        }
        SnapshotCommand::Revert { vm, name } => {
            let reverted =
                progress::spin(format!("reverting {vm} to {name}"), client.revert_snapshot(&vm, &name)).await?;
            output::print(&format!("{}: reverted to {name} ({})\n", reverted.name, reverted.state))
        }
        SnapshotCommand::Delete { vm, name } => {
            client.delete_snapshot(&vm, &name).await?;
            output::print(&format!("{vm}: snapshot {name} deleted\n"))
        }
    }
}
