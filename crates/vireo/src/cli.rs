//! The command line, as clap types. Parsing only: the commands live in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use vireo_api::{Accel, ByteSize};

#[derive(Debug, Parser)]
#[command(name = "vireo", version, about = "Run KVM/QEMU virtual machines: the daemon (`vireo serve`) and its client")]
pub struct Cli {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// How clients reach the daemon; `--socket` is also where `vireo serve` listens.
#[derive(Debug, Args)]
pub struct ConnectionArgs {
    /// The daemon's Unix socket [default: DATA_DIR/vireo.sock]
    #[arg(long, global = true, env = "VIREO_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Reach the daemon over TCP instead of its socket, e.g. http://10.0.0.5:7070
    #[arg(long, global = true, env = "VIREO_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The API token for --url (the daemon keeps it in DATA_DIR/api-token)
    #[arg(long, global = true, env = "VIREO_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon
    Serve(ServeArgs),
    /// Define, run and inspect virtual machines
    #[command(subcommand)]
    Vm(VmCommand),
    /// Inspect the host the daemon runs on
    #[command(subcommand)]
    Host(HostCommand),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the daemon keeps its state [default: /var/lib/vireo for root, else ~/.local/share/vireo]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Also serve the API over TCP on ADDR:PORT (bearer token required)
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a VM from flags or from a TOML spec file; it starts out stopped
    Create(CreateArgs),
    /// List VMs
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one VM in detail
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Start a stopped VM
    Start { name: String },
    /// Stop a VM: ask the guest to power off, then pull the plug after the timeout
    Stop {
        name: String,
        /// Stop at once, without asking the guest
        #[arg(long)]
        force: bool,
        /// Seconds to wait for the guest to power off [daemon default: 60]
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Pause a running VM's vCPUs
    Pause { name: String },
    /// Resume a paused VM
    Resume { name: String },
    /// Reset a running VM
    Restart { name: String },
    /// Delete a stopped VM's definition (disk images are left alone)
    #[command(alias = "rm")]
    Delete { name: String },
    /// Print the VM's kept console output
    Logs {
        name: String,
        /// Print only the last BYTES bytes (a size such as 4096 or 64KiB)
        #[arg(long, value_name = "BYTES", value_parser = parse_size)]
        tail: Option<ByteSize>,
    },
    /// Attach to the VM's serial console (detach with Ctrl-])
    Console { name: String },
}

/// Spec flags are taken as text and checked by `spec_args`, so that a bad value is
/// reported like any spec error (exit 1, naming the flag) rather than as a usage error.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The VM's name: letters, digits, '-' and '_'
    pub name: String,
    /// Read the spec from a TOML file ('-' for stdin); its `name` may be omitted
    #[arg(long, short = 'f', value_name = "PATH", conflicts_with_all = SPEC_FLAGS)]
    pub file: Option<PathBuf>,
    /// Number of virtual CPUs [default: 1]
    #[arg(long, value_name = "N")]
    pub vcpus: Option<u32>,
    /// Guest memory, e.g. 256MiB or 1G
    #[arg(long, value_name = "SIZE", required_unless_present = "file")]
    pub memory: Option<String>,
    /// Kernel image to boot directly
    #[arg(long, value_name = "PATH")]
    pub kernel: Option<PathBuf>,
    /// Initramfs for --kernel
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line for --kernel
    #[arg(long, value_name = "STR", allow_hyphen_values = true)]
    pub cmdline: Option<String>,
    /// Attach a disk image (repeatable); a ',' in PATH is written ',,'
    #[arg(long = "disk", value_name = "PATH[,format=raw|qcow2][,readonly=on]")]
    pub disks: Vec<String>,
    /// Accelerator [default: auto]
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Console output the daemon keeps for `vm logs` [default: 1MiB]
    #[arg(long, value_name = "SIZE")]
    pub console_log_size: Option<String>,
}

const SPEC_FLAGS: [&str; 8] = ["vcpus", "memory", "kernel", "initrd", "cmdline", "disks", "accel", "console_log_size"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccelArg {
    Auto,
    Kvm,
    Tcg,
}

impl From<AccelArg> for Accel {
    fn from(accel: AccelArg) -> Self {
        match accel {
            AccelArg::Auto => Accel::Auto,
            AccelArg::Kvm => Accel::Kvm,
            AccelArg::Tcg => Accel::Tcg,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Check whether this host can run VMs, and with which accelerator
    Check {
        #[command(flatten)]
        output: OutputArg,
    },
}

#[derive(Debug, Args)]
pub struct OutputArg {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, value_name = "FORMAT")]
    pub format: OutputFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Table,
    Json,
}

fn parse_size(text: &str) -> Result<ByteSize, String> {
    text.parse().map_err(|e: vireo_api::size::ParseSizeError| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn create_takes_flags_or_a_file_not_both() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["vireo", "vm", "create"], args].concat());
        assert!(parse(&["web1", "--memory", "256MiB"]).is_ok());
        assert!(parse(&["web1", "--file", "spec.toml"]).is_ok());
        assert!(parse(&["web1"]).is_err(), "--memory or --file is required");
        assert!(parse(&["web1", "--file", "s.toml", "--vcpus", "2"]).is_err());
    }

    #[test]
    fn connection_options_work_before_and_after_the_subcommand() {
        let cli = Cli::try_parse_from(["vireo", "vm", "list", "--socket", "/s"]).unwrap();
        assert_eq!(cli.connection.socket, Some(PathBuf::from("/s")));
        let cli = Cli::try_parse_from(["vireo", "--socket", "/s", "serve", "--listen", "127.0.0.1:7070"]).unwrap();
        assert_eq!(cli.connection.socket, Some(PathBuf::from("/s")));
    }
}
