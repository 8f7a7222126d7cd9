//! `vireo vm ...`

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::Context;
use vireo_api::{StopRequest, Vm, VmSpec};
use vireo_client::{Client, Endpoint};

use vireo_core::spec::disk_source;

use crate::cli::{CreateArgs, DiskCommand, NicCommand, OutputFormat, VmCommand};
use crate::commands::volume::volume_ref;
use crate::output;
use crate::paths::current_dir;
use crate::progress;
use crate::spec_args::{self, FileCheck};

pub async fn run(command: VmCommand, endpoint: Endpoint) -> anyhow::Result<()> {
    let file_check = FileCheck::for_endpoint(&endpoint);
    let client = Client::new(endpoint);
    match command {
        VmCommand::Create(args) => {
            let spec = spec_for(&args, file_check)?;
            let vm = client.create_vm(&spec).await?;
            output::print(&format!("{}: created ({})\n", vm.name, vm.state))
        }
        VmCommand::List { output } => {
            let vms = client.list_vms().await?;
            match output.format {
                OutputFormat::Json => output::print_json(&vms),
                OutputFormat::Table => output::print(&output::vm_table(&vms)),
            }
        }
        VmCommand::Show { name, output } => {
            let vm = client.get_vm(&name).await?;
            match output.format {
                OutputFormat::Json => output::print_json(&vm),
                OutputFormat::Table => output::print(&output::vm_details(&vm)),
            }
        }
        VmCommand::Start { name } => confirm(client.start_vm(&name).await?),
        VmCommand::Stop { name, force, timeout } => {
            if !force {
                progress(&format!("{name}: asking the guest to power off..."));
            }
            confirm(client.stop_vm(&name, &StopRequest { force, timeout_secs: timeout }).await?)
        }
        VmCommand::Pause { name } => confirm(client.pause_vm(&name).await?),
        VmCommand::Resume { name } => confirm(client.resume_vm(&name).await?),
        VmCommand::Restart { name } => confirm(client.restart_vm(&name).await?),
        VmCommand::Delete { name } => {
            client.delete_vm(&name).await?;
            output::print(&format!("{name}: deleted\n"))
        }
        VmCommand::Logs { name, tail } => output::write_stdout(&client.vm_logs(&name, tail.map(|t| t.bytes())).await?),
        VmCommand::Console { name } => crate::console::attach(&client, &name).await,
        VmCommand::Save { name } => {
            confirm(progress::spin(format!("saving {name}'s memory"), client.save_vm(&name)).await?)
        }
        VmCommand::Restore { name } => {
            confirm(progress::spin(format!("restoring {name}"), client.restore_vm(&name)).await?)
        }
        VmCommand::Migrate(args) => super::migrate::migrate(&client, args).await,
        VmCommand::MigrateCancel { name } => super::migrate::cancel(&client, &name).await,
        VmCommand::Disk(DiskCommand::Attach { vm, disk }) => {
            let disk = spec_args::disk_to_attach(&disk, &current_dir()?, file_check).map_err(anyhow::Error::msg)?;
            let attached = client.attach_disk(&vm, &disk).await?;
            output::print(&format!("{}: attached {}\n", attached.name, disk_source(&disk)))
        }
        VmCommand::Disk(DiskCommand::Detach { vm, volume }) => {
            volume_ref(&volume)?;
            let detached = client.detach_disk(&vm, &volume).await?;
            output::print(&format!("{}: detached volume {volume}\n", detached.name))
        }
        VmCommand::Nic(NicCommand::Attach { vm, nic }) => {
            let nic = spec_args::parse_nic(&nic).map_err(anyhow::Error::msg)?;
            let attached = client.attach_nic(&vm, &nic).await?;
            let mac = attached.nics.last().map(|n| n.mac.clone()).unwrap_or_default();
            output::print(&format!("{}: attached NIC {mac} on {}\n", attached.name, nic.network))
        }
        VmCommand::Nic(NicCommand::Detach { vm, mac }) => {
            vireo_core::mac::MacAddr::parse_nic(&mac)?;
            let detached = client.detach_nic(&vm, &mac).await?;
            output::print(&format!("{}: detached NIC {mac}\n", detached.name))
        }
    }
}

/// The spec of `vm create`, checked here so that nothing invalid reaches the daemon.
fn spec_for(args: &CreateArgs, file_check: FileCheck) -> anyhow::Result<VmSpec> {
    let spec = match &args.file {
        Some(file) => {
            let (label, text) = read_spec_file(file)?;
            spec_args::spec_from_file(&args.name, &label, &text, file_check).map_err(anyhow::Error::msg)?
        }
        None => {
            let spec = spec_args::spec_from_flags(args, &current_dir()?).map_err(anyhow::Error::msg)?;
            spec_args::validate_flags(&spec, file_check).map_err(anyhow::Error::msg)?;
            spec
        }
    };
    Ok(spec)
}

/// The file's text and the name to report it by; `-` is standard input.
fn read_spec_file(file: &Path) -> anyhow::Result<(String, String)> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the spec from standard input")?;
        return Ok(("<stdin>".to_string(), text));
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok((file.display().to_string(), text))
}

/// `web1: running`
fn confirm(vm: Vm) -> anyhow::Result<()> {
    output::print(&format!("{}: {}\n", vm.name, vm.state))
}

/// A note on stderr for a person waiting at a terminal; scripts do not see it.
fn progress(note: &str) {
    let mut stderr = std::io::stderr();
    if stderr.is_terminal() {
        let _ = writeln!(stderr, "{note}");
    }
}
