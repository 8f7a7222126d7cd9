//! The command line, as clap types. Parsing only: the commands live in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use vireo_api::{Accel, ByteSize, DiskFormat, NetworkMode, PoolType};
use vireo_server::LogFormat;

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
    /// Manage storage pools: directories that hold volumes
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Create, import, clone and resize disk volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Take, list and revert VM snapshots
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Manage virtual networks: NAT, isolated, or a host bridge
    #[command(subcommand)]
    Net(NetCommand),
    /// Inspect the host the daemon runs on
    #[command(subcommand)]
    Host(HostCommand),
    /// Show what happened: every state change and operation, oldest first (-o json: an array,
    /// or with --follow one event per line)
    Events(EventsArgs),
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
    /// Also serve Prometheus metrics (GET /metrics only, no token) on ADDR:PORT
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics_listen: Option<SocketAddr>,
    /// Do not create the `default` NAT network (bridge, dnsmasq, nftables) on first start
    #[arg(long)]
    pub no_default_network: bool,
    /// How the daemon writes its log on stderr: human-readable text or JSON lines
    #[arg(long, value_name = "FORMAT", default_value_t = LogFormat::Text,
        value_parser = PossibleValuesParser::new(LogFormat::NAMES).try_map(|name| name.parse::<LogFormat>()))]
    pub log_format: LogFormat,
    /// Seconds between the samples kept for `GET /v1/vms/{name}/history` (the last hour is kept)
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub history_interval: u64,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing events as they happen (resuming after a lost connection)
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this VM's events
    #[arg(long, value_name = "NAME")]
    pub vm: Option<String>,
    /// Only events after this id [default: the latest ones]
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// Show at most this many events (before following) [daemon default: 100]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub limit: Option<u32>,
    #[command(flatten)]
    pub output: OutputArg,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    pub name: String,
    /// The destination daemon's API address, e.g. http://10.0.0.6:7070
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The destination daemon's API token (its DATA_DIR/api-token)
    #[arg(long, env = "VIREO_TO_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub to_token: String,
    /// Copy the VM's volumes to the destination (for storage the hosts do not share)
    #[arg(long)]
    pub copy_storage: bool,
    /// Longest acceptable pause of the guest at switch-over, in milliseconds [default: 30]
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub max_downtime: Option<u64>,
    /// Limit the memory stream to this many MiB/s [default: no limit]
    #[arg(long, value_name = "MIB_PER_S", value_parser = clap::value_parser!(u64).range(1..))]
    pub bandwidth: Option<u64>,
    /// Switch to post-copy after the first pass over memory (converges for any guest)
    #[arg(long)]
    pub postcopy: bool,
    /// Return once the migration runs instead of following it to the end
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Define a VM from flags or from a TOML spec file; it starts out stopped
    Create(Box<CreateArgs>),
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
    /// Start a stopped VM; a saved one resumes where it was
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
    /// Write a running VM's memory to disk and stop it; `start` or `restore` resumes it
    Save { name: String },
    /// Resume a saved VM where it was
    Restore { name: String },
    /// Move a running VM to another vireo daemon while it keeps running
    Migrate(MigrateArgs),
    /// Cancel a migration under way; the VM keeps running here
    MigrateCancel { name: String },
    /// Attach and detach disks, hot-plugging them into a running VM
    #[command(subcommand)]
    Disk(DiskCommand),
    /// Attach and detach NICs, hot-plugging them into a running VM
    #[command(subcommand)]
    Nic(NicCommand),
}

#[derive(Debug, Subcommand)]
pub enum NicCommand {
    /// Add a NIC on a network to the VM (and to its spec)
    Attach {
        /// The VM
        vm: String,
        /// The network, with options as for `vm create --nic`: mac=MAC, model=virtio
        #[arg(value_name = "NETWORK[,OPTION=VALUE...]")]
        nic: String,
    },
    /// Remove the NIC with this MAC from the VM (and from its spec)
    Detach {
        /// The VM
        vm: String,
        /// The NIC's MAC, as `vm show` lists it
        mac: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// Add a disk to the VM (and to its spec)
    Attach {
        /// The VM
        vm: String,
        /// A volume or an image file, with options as for `vm create --disk`: readonly=on, cache=MODE,
        /// aio=MODE, boot_order=N (and format= for a file); a ',' in PATH is written ',,'
        #[arg(value_name = "POOL/NAME|PATH[,OPTION=VALUE...]")]
        disk: String,
    },
    /// Remove a volume disk from the VM (and from its spec)
    Detach {
        /// The VM
        vm: String,
        /// The volume to detach
        #[arg(value_name = "POOL/NAME")]
        volume: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Define a pool; its directory is created if missing
    Create {
        /// The pool's name: letters, digits, '-' and '_'
        name: String,
        /// The kind of storage
        #[arg(long = "type", value_enum, default_value_t = PoolTypeArg::Dir)]
        pool_type: PoolTypeArg,
        /// The directory holding the pool's volumes
        #[arg(long, value_name = "DIR")]
        path: PathBuf,
    },
    /// List pools with their usage
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one pool
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete an empty pool (its directory is left alone)
    #[command(alias = "rm")]
    Delete { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PoolTypeArg {
    /// A directory on the daemon's host
    Dir,
}

impl From<PoolTypeArg> for PoolType {
    fn from(pool_type: PoolTypeArg) -> Self {
        match pool_type {
            PoolTypeArg::Dir => PoolType::Dir,
        }
    }
}

/// Sizes are taken as text and read by the command, so that a bad size is reported
/// like other bad values (exit 1, naming the flag) rather than as a usage error.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create an empty volume
    Create {
        /// The new volume
        #[arg(value_name = "POOL/NAME")]
        volume: String,
        /// Virtual size, e.g. 10GiB
        #[arg(long, value_name = "SIZE")]
        size: String,
        /// Image format [default: qcow2]
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Copy an image file (any format qemu-img reads) into a pool
    Import {
        /// The new volume
        #[arg(value_name = "POOL/NAME")]
        volume: String,
        /// The image to copy, on the daemon's host
        file: PathBuf,
        /// Format of the new volume [default: qcow2]
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
    },
    /// Copy a volume, or make a thin linked clone of it
    Clone {
        /// The volume to copy
        #[arg(value_name = "SRC_POOL/SRC")]
        source: String,
        /// The new volume
        #[arg(value_name = "DST_POOL/DST")]
        target: String,
        /// A qcow2 overlay backed by the source (instant; the source must then stay)
        #[arg(long)]
        linked: bool,
    },
    /// Change a volume's virtual size
    Resize {
        #[arg(value_name = "POOL/NAME")]
        volume: String,
        /// The new size, e.g. 20GiB
        #[arg(long, value_name = "SIZE")]
        size: String,
        /// Allow a smaller size (whatever lies past the new end is lost)
        #[arg(long)]
        allow_shrink: bool,
    },
    /// Delete a volume no VM uses
    #[command(alias = "rm")]
    Delete {
        #[arg(value_name = "POOL/NAME")]
        volume: String,
    },
    /// List volumes, of one pool or of all
    #[command(alias = "ls")]
    List {
        /// Only this pool's volumes
        pool: Option<String>,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one volume with its backing chain
    Show {
        #[arg(value_name = "POOL/NAME")]
        volume: String,
        #[command(flatten)]
        output: OutputArg,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Qcow2,
    Raw,
}

impl From<FormatArg> for DiskFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::Qcow2 => DiskFormat::Qcow2,
            FormatArg::Raw => DiskFormat::Raw,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a VM: memory and disks of a running VM, or disks only
    Create {
        vm: String,
        /// The snapshot's name: letters, digits, '-' and '_'
        name: String,
        /// Only the disks, not the memory of a running VM
        #[arg(long)]
        disk_only: bool,
    },
    /// List a VM's snapshots
    #[command(alias = "ls")]
    List {
        vm: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Return a VM to a snapshot
    Revert { vm: String, name: String },
    /// Delete a snapshot
    #[command(alias = "rm")]
    Delete { vm: String, name: String },
}

/// `--vlan` is taken as text and read by the command, so that a bad tag is reported
/// like other bad values (exit 1, naming the flag) rather than as a usage error.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Define a network and set up its host side
    Create {
        /// The network's name: letters, digits, '-' and '_'
        name: String,
        /// How the network reaches the world
        #[arg(long, value_enum, default_value_t = NetworkModeArg::Nat)]
        mode: NetworkModeArg,
        /// IPv4 subnet of a nat or isolated network, e.g. 10.77.1.0/24 [default: a free one]
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// The existing host bridge of a bridge network
        #[arg(long, value_name = "BRIDGE")]
        bridge: Option<String>,
        /// VLAN tag (1-4094) for the NICs of a bridge network
        #[arg(long, value_name = "ID")]
        vlan: Option<String>,
    },
    /// List networks
    #[command(alias = "ls")]
    List {
        #[command(flatten)]
        output: OutputArg,
    },
    /// Show one network with its DHCP leases
    Show {
        name: String,
        #[command(flatten)]
        output: OutputArg,
    },
    /// Delete a network no VM has a NIC on
    #[command(alias = "rm")]
    Delete { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NetworkModeArg {
    /// A bridge of its own with DHCP, and NAT to the host's uplinks
    Nat,
    /// A bridge of its own with DHCP and no way out
    Isolated,
    /// NICs join an existing host bridge (--bridge), optionally on a VLAN
    Bridge,
}

impl From<NetworkModeArg> for NetworkMode {
    fn from(mode: NetworkModeArg) -> Self {
        match mode {
            NetworkModeArg::Nat => NetworkMode::Nat,
            NetworkModeArg::Isolated => NetworkMode::Isolated,
            NetworkModeArg::Bridge => NetworkMode::Bridge,
        }
    }
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
    /// Boot --kernel as given, not through its PVH entry
    #[arg(long)]
    pub no_pvh: bool,
    /// Firmware: auto (qboot for --kernel, else SeaBIOS), seabios or qboot [default: auto]
    #[arg(long, value_name = "NAME")]
    pub firmware: Option<String>,
    /// Legacy hardware to add, comma-separated: hpet, ps2, vmport, sata, smbus, smm [default: none]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub legacy: Vec<String>,
    /// PCIe ports for disks and NICs attached while the VM runs, 0 to 8 [default: 4]
    #[arg(long, value_name = "N")]
    pub hotplug_ports: Option<u32>,
    /// Graphical display: std or virtio (a video card and a VNC server, reached through
    /// the web console or `GET /v1/vms/NAME/vnc`), or none [default: none]
    #[arg(long, value_name = "VGA")]
    pub display: Option<String>,
    /// Attach a volume or an image file (repeatable), with options format=raw|qcow2 (files only),
    /// readonly=on, cache=MODE, aio=MODE, boot_order=N; a ',' in PATH is written ',,'
    #[arg(long = "disk", value_name = "POOL/NAME|PATH[,OPTION=VALUE...]")]
    pub disks: Vec<String>,
    /// Add a NIC on a network (repeatable), with options mac=52:54:00:xx:xx:xx, model=virtio
    #[arg(long = "nic", value_name = "NETWORK[,OPTION=VALUE...]")]
    pub nics: Vec<String>,
    /// Accelerator [default: auto]
    #[arg(long, value_enum)]
    pub accel: Option<AccelArg>,
    /// Console output the daemon keeps for `vm logs` [default: 1MiB]
    #[arg(long, value_name = "SIZE")]
    pub console_log_size: Option<String>,
}

const SPEC_FLAGS: [&str; 13] = [
    "vcpus",
    "memory",
    "kernel",
    "initrd",
    "cmdline",
    "no_pvh",
    "firmware",
    "legacy",
    "hotplug_ports",
    "display",
    "disks",
    "accel",
    "console_log_size",
];

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
    /// Show this host: name, versions, accelerator, CPUs, load, memory, uptime
    Show {
        #[command(flatten)]
        output: OutputArg,
    },
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
    fn storage_commands_parse() {
        let cli = Cli::try_parse_from(["vireo", "pool", "create", "default", "--path", "pools/d"]).unwrap();
        let Command::Pool(PoolCommand::Create { name, pool_type, path }) = cli.command else {
            panic!("not a pool create")
        };
        assert_eq!((name.as_str(), pool_type, path), ("default", PoolTypeArg::Dir, PathBuf::from("pools/d")));
        assert!(Cli::try_parse_from(["vireo", "pool", "create", "d", "--type", "lvm", "--path", "/p"]).is_err());
        assert!(Cli::try_parse_from(["vireo", "pool", "create", "d"]).is_err(), "--path is required");

        let cli =
            Cli::try_parse_from(["vireo", "volume", "create", "d/root", "--size", "10GiB", "--format", "raw"]).unwrap();
        let Command::Volume(VolumeCommand::Create { volume, size, format }) = cli.command else { panic!() };
        assert_eq!((volume.as_str(), size.as_str(), format), ("d/root", "10GiB", Some(FormatArg::Raw)));
        let cli = Cli::try_parse_from(["vireo", "volume", "clone", "d/a", "d/b", "--linked"]).unwrap();
        assert!(matches!(cli.command, Command::Volume(VolumeCommand::Clone { linked: true, .. })));
        let cli = Cli::try_parse_from(["vireo", "volume", "ls", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Volume(VolumeCommand::List { pool: None, output: OutputArg { format: OutputFormat::Json } })
        ));
        assert!(Cli::try_parse_from(["vireo", "volume", "resize", "d/a"]).is_err(), "--size is required");
    }

    #[test]
    fn vm_disk_and_snapshot_commands_parse() {
        let cli = Cli::try_parse_from(["vireo", "vm", "disk", "attach", "web1", "d/data,readonly=on"]).unwrap();
        let Command::Vm(VmCommand::Disk(DiskCommand::Attach { vm, disk })) = cli.command else { panic!() };
        assert_eq!((vm.as_str(), disk.as_str()), ("web1", "d/data,readonly=on"));
        assert!(Cli::try_parse_from(["vireo", "vm", "disk", "detach", "web1", "d/data"]).is_ok());
        assert!(Cli::try_parse_from(["vireo", "vm", "save", "web1"]).is_ok());
        let cli = Cli::try_parse_from(["vireo", "snapshot", "create", "web1", "s1", "--disk-only"]).unwrap();
        assert!(matches!(cli.command, Command::Snapshot(SnapshotCommand::Create { disk_only: true, .. })));
        assert!(Cli::try_parse_from(["vireo", "snapshot", "revert", "web1"]).is_err(), "needs the snapshot");
    }

    #[test]
    fn net_commands_parse() {
        let cli = Cli::try_parse_from(["vireo", "net", "create", "lan"]).unwrap();
        let Command::Net(NetCommand::Create { name, mode, subnet, bridge, vlan }) = cli.command else { panic!() };
        assert_eq!((name.as_str(), mode, subnet, bridge, vlan), ("lan", NetworkModeArg::Nat, None, None, None));
        let args = ["vireo", "net", "create", "up", "--mode", "bridge", "--bridge", "br0", "--vlan", "10"];
        let cli = Cli::try_parse_from(args).unwrap();
        let Command::Net(NetCommand::Create { mode, bridge, vlan, .. }) = cli.command else { panic!() };
        assert_eq!((mode, bridge.as_deref(), vlan.as_deref()), (NetworkModeArg::Bridge, Some("br0"), Some("10")));
        assert!(Cli::try_parse_from(["vireo", "net", "create", "lan", "--mode", "macvtap"]).is_err());
        let cli = Cli::try_parse_from(["vireo", "net", "ls", "-o", "json"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Net(NetCommand::List { output: OutputArg { format: OutputFormat::Json } })
        ));
        assert!(Cli::try_parse_from(["vireo", "net", "show", "lan", "-o", "json"]).is_ok());
        assert!(Cli::try_parse_from(["vireo", "net", "rm", "lan"]).is_ok());
    }

    #[test]
    fn connection_options_work_before_and_after_the_subcommand() {
        let cli = Cli::try_parse_from(["vireo", "vm", "list", "--socket", "/s"]).unwrap();
        assert_eq!(cli.connection.socket, Some(PathBuf::from("/s")));
        let cli = Cli::try_parse_from(["vireo", "--socket", "/s", "serve", "--listen", "127.0.0.1:7070"]).unwrap();
        assert_eq!(cli.connection.socket, Some(PathBuf::from("/s")));
    }

    #[test]
    fn serve_logs_text_unless_json_is_asked_for() {
        let format = |args: &[&str]| match Cli::try_parse_from([&["vireo", "serve"], args].concat()).map(|c| c.command)
        {
            Ok(Command::Serve(serve)) => Ok(serve.log_format),
            Ok(other) => panic!("parsed as {other:?}"),
            Err(err) => Err(err.kind()),
        };
        assert_eq!(format(&[]), Ok(LogFormat::Text));
        assert_eq!(format(&["--log-format", "json"]), Ok(LogFormat::Json));
        assert_eq!(format(&["--log-format", "yaml"]), Err(clap::error::ErrorKind::InvalidValue));
    }
}
