// VM summary `#/vms/{name}`: spec, disks, NICs and the charts of the last hour.
// Data: the frame's GET /v1/vms/{name} (again every 3 s while a NIC waits for its DHCP
// lease); the charts poll GET /v1/vms/{name}/history.

import { api } from "../api";
import { empty, facts, h, row, section, table } from "../dom";
import { time } from "../format";
import type { Params } from "../router";
import type { Vm } from "../types";
import { hasDisplay, vmFrame } from "./vm-frame";

export async function vmSummaryPage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  const name = params["name"] ?? "";
  const details = h("div", {});
  let latest: Vm | null = null;
  // Counts the copies shown, so a poll's answer never replaces a newer copy (see watchLeases).
  let shown = 0;
  const show = (vm: Vm) => {
    latest = vm;
    shown += 1;
    details.replaceChildren(...describe(vm));
  };
  const frame = await vmFrame(main, name, "summary", signal, show);
  show(frame.vm);
  watchLeases(name, () => ({ vm: latest, shown }), show, signal);
  const charts = h("div", { class: "charts" });
  frame.body.append(details, section("Activity", {}, h("p", { class: "hint" }, "The last hour, sampled by the daemon."), charts));
  // uPlot is only needed here: loading it with the page keeps it out of the first load.
  const { mountCharts } = await import("../charts");
  if (!signal.aborted) mountCharts(charts, name, signal);
}

const LEASE_POLL_MS = 3000;

/**
 * A DHCP lease comes with no event: while the running VM has a NIC without an address,
 * look at the VM again every few seconds so the address shows when the guest gets one.
 * One request at a time, and its answer is dropped if a fresher copy (from an event)
 * was shown meanwhile.
 */
function watchLeases(
  name: string,
  current: () => { vm: Vm | null; shown: number },
  show: (vm: Vm) => void,
  signal: AbortSignal,
): void {
  let polling = false;
  const timer = setInterval(() => {
    const { vm, shown } = current();
    if (polling || vm === null || vm.state !== "running" || vm.nics.every((nic) => nic.ip)) return;
    polling = true;
    api.vm(name, signal)
      .then((fresh) => {
        if (current().shown === shown) show(fresh);
      }, () => {
        // Gone or unreachable: the frame reports that from the event stream.
      })
      .finally(() => {
        polling = false;
      });
  }, LEASE_POLL_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

function describe(vm: Vm): HTMLElement[] {
  const spec = vm.spec;
  const boot = spec.boot ?? {};
  const accel = vm.accel ? `${spec.accel ?? "auto"} (running on ${vm.accel})` : (spec.accel ?? "auto");
  const specFacts = facts([
    ["vCPUs", spec.vcpus ?? 1],
    ["Memory", String(spec.memory)],
    ["Accelerator", accel],
    ["Kernel", boot.kernel ?? "none: the firmware boots the first disk"],
    ["Initrd", boot.initrd ?? null],
    ["Kernel command line", boot.cmdline ?? null],
    ["Display", hasDisplay(vm) ? (spec.display?.vga ?? null) : "none"],
    ["Firmware", vm.boot?.firmware ?? spec.machine?.firmware ?? "auto"],
    ["Boot entry", vm.boot?.entry ?? null],
    ["QEMU process", vm.pid ?? null],
    ["Created", time(vm.created_at)],
    ["State since", time(vm.state_changed_at)],
  ]);

  const disks = spec.disks ?? [];
  const diskView = disks.length === 0
    ? empty("No disks")
    : table("Disks", ["Disk", "Format", "Access", "Cache"], disks.map((disk) =>
      row({}, disk.volume ?? disk.path ?? "", disk.format ?? (disk.volume ? "volume's own" : "by extension"),
        disk.readonly ? "read-only" : "read-write", disk.cache ?? "writeback")));

  const nicView = vm.nics.length === 0
    ? empty("No NICs")
    : table("NICs", ["MAC", "Network", "Address"], vm.nics.map((nic) =>
      row({ "data-mac": nic.mac }, h("code", {}, nic.mac), nic.network, nic.ip ?? "none leased yet")));

  return [section("Spec", {}, specFacts), section("Disks", {}, diskView), section("NICs", {}, nicView)];
}
