// The wire types of /v1 the app uses, as crates/vireo-api defines them (fields the
// app never reads are left out).

export type VmState =
  | "stopped"
  | "starting"
  | "running"
  | "paused"
  | "stopping"
  | "crashed"
  | "saved"
  | "migrating"
  | "incoming";

export const VM_STATES: readonly VmState[] = [
  "running",
  "paused",
  "starting",
  "stopping",
  "stopped",
  "saved",
  "crashed",
  "migrating",
  "incoming",
];

export type Vga = "none" | "std" | "virtio";

export interface DiskSpec {
  volume?: string;
  path?: string;
  format?: "raw" | "qcow2";
  readonly?: boolean;
  cache?: string;
  aio?: string;
  boot_order?: number;
}

export interface NicSpec {
  network: string;
  mac?: string;
}

export interface VmSpec {
  name: string;
  vcpus?: number;
  /** A byte count, or a string with a binary unit such as "256MiB" (the daemon answers with the string). */
  memory: number | string;
  accel?: "auto" | "kvm" | "tcg";
  boot?: { kernel?: string | null; initrd?: string | null; cmdline?: string | null; pvh?: boolean };
  disks?: DiskSpec[];
  nics?: NicSpec[];
  display?: { vga: Vga };
  machine?: { firmware?: string; legacy?: string[] };
}

export interface NicStatus {
  network: string;
  mac: string;
  ip: string | null;
}

export interface Vm {
  name: string;
  state: VmState;
  spec: VmSpec;
  accel: string | null;
  pid: number | null;
  created_at: string;
  state_changed_at: string;
  last_error: string | null;
  nics: NicStatus[];
  boot?: { entry: string; firmware: string; kernel?: string };
}

export interface VmHistoryPoint {
  at: string;
  state: VmState;
  cpu_percent: number | null;
  memory_rss_bytes: number | null;
  disk_read_bytes_per_sec: number | null;
  disk_write_bytes_per_sec: number | null;
  net_rx_bytes_per_sec: number | null;
  net_tx_bytes_per_sec: number | null;
}

export interface VmHistory {
  vm: string;
  interval_secs: number;
  points: VmHistoryPoint[];
}

export interface Snapshot {
  vm: string;
  name: string;
  kind: "full" | "disk";
  vm_state: VmState;
  created_at: string;
}

export interface Pool {
  name: string;
  type: string;
  path: string;
  capacity_bytes: number;
  allocation_bytes: number;
  available_bytes: number;
  volume_count: number;
}

export interface Volume {
  pool: string;
  name: string;
  format: "raw" | "qcow2";
  capacity_bytes: number;
  allocation_bytes: number;
  path: string;
  backing: string | null;
  used_by: string[];
}

export type NetworkMode = "nat" | "isolated" | "bridge";

export interface Network {
  name: string;
  mode: NetworkMode;
  bridge: string;
  subnet: string | null;
  gateway: string | null;
  dhcp_start: string | null;
  dhcp_end: string | null;
  vlan: number | null;
  leases: { mac: string; ip: string; vm: string | null }[];
  used_by: string[];
}

export interface NetworkSpec {
  name: string;
  mode: NetworkMode;
  subnet?: string;
  bridge?: string;
  vlan?: number;
}

export interface HostInfo {
  hostname: string;
  version: string;
  qemu_version: string;
  accel: string;
  cpus: number;
  load_average: [number, number, number];
  memory_total_bytes: number;
  memory_available_bytes: number;
  uptime_secs: number;
}

/** One entry of the daemon's event log (`kind` is e.g. `vm.started`). */
export interface VireoEvent {
  id: number;
  time: string;
  vm?: string;
  kind: string;
  details: Record<string, unknown>;
}

/** Body of every failed request. */
export interface ErrorBody {
  code: string;
  message: string;
  field?: string;
}
