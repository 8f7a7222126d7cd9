// Overview `#/`: the host, VMs by state, pools and networks at a glance.
// Data: GET /v1/host, /v1/vms, /v1/pools, /v1/networks; again after any event, and the
// host's load every 10 s.

import { api } from "../api";
import { type Child, append, empty, facts, h, section, setTitle } from "../dom";
import { bytes, duration } from "../format";
import { loadLive } from "../live";
import { href } from "../router";
import { type HostInfo, type Network, type Pool, VM_STATES, type Vm } from "../types";

const HOST_REFRESH_MS = 10_000;

export async function overviewPage(main: HTMLElement, _params: unknown, signal: AbortSignal): Promise<void> {
  setTitle("Overview");
  const host = card("Host");
  const vms = card("Virtual machines");
  const pools = card("Storage pools");
  const networks = card("Networks");
  main.append(h("h1", {}, "Overview"), h("div", { class: "cards" }, host.section, vms.section, pools.section, networks.section));

  const loadHost = async () => host.fill(hostFacts(await api.host({ signal })));
  const loadRest = async () => {
    const [vmList, poolList, networkList] = await Promise.all([api.vms(signal), api.pools(signal), api.networks(signal)]);
    vms.fill(...vmSummary(vmList));
    pools.fill(...poolSummary(poolList));
    networks.fill(...networkSummary(networkList));
  };
  await Promise.all([loadHost(), loadLive(() => true, loadRest, signal)]);
  const timer = setInterval(() => loadHost().catch(() => undefined), HOST_REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer), { once: true });
}

function card(title: string): { section: HTMLElement; fill(...children: Child[]): void } {
  const body = h("div", {});
  return {
    section: section(title, { class: "card" }, body),
    fill(...children: Child[]) {
      body.replaceChildren();
      append(body, children);
    },
  };
}

function hostFacts(host: HostInfo): HTMLElement {
  const [one, five, fifteen] = host.load_average.map((load) => load.toFixed(2));
  const used = host.memory_total_bytes - host.memory_available_bytes;
  return facts([
    ["Hostname", host.hostname],
    ["Vireo", host.version],
    ["QEMU", host.qemu_version || "unknown"],
    ["Accelerator", host.accel],
    ["CPUs", host.cpus],
    ["Load (1, 5, 15 min)", `${one}, ${five}, ${fifteen}`],
    ["Memory", usage(used, host.memory_total_bytes, `${bytes(host.memory_available_bytes)} available of ${bytes(host.memory_total_bytes)}`)],
    ["Up", duration(host.uptime_secs)],
  ]);
}

/** A meter with its words beside it (the meter alone says nothing to a screen reader). */
function usage(used: number, total: number, words: string): HTMLElement {
  return h("span", { class: "usage" }, h("meter", { min: 0, max: total, value: used, "aria-hidden": "true" }), words);
}

function vmSummary(vms: Vm[]): Child[] {
  if (vms.length === 0) {
    return [empty("No virtual machines yet"), h("p", {}, h("a", { href: href("/vms/+new") }, "Create a virtual machine"))];
  }
  const counts = VM_STATES.map((state) => [state, vms.filter((vm) => vm.state === state).length] as const).filter(
    ([, count]) => count > 0,
  );
  return [
    h("ul", { class: "state-counts" }, ...counts.map(([state, count]) =>
      h("li", {}, h("span", { class: `state state-${state}` }, state), ` ${count}`))),
    h("p", {}, h("a", { href: href("/vms") }, `Open the VM list (${vms.length})`)),
  ];
}

function poolSummary(pools: Pool[]): Child[] {
  if (pools.length === 0) return [empty("No storage pools yet")];
  return [
    h("ul", { class: "plain" }, ...pools.map((pool) => {
      const used = pool.capacity_bytes - pool.available_bytes;
      return h(
        "li",
        {},
        h("strong", {}, pool.name),
        ` · ${pool.volume_count} volume${pool.volume_count === 1 ? "" : "s"}`,
        h("br"),
        usage(used, pool.capacity_bytes, `${bytes(pool.available_bytes)} free of ${bytes(pool.capacity_bytes)}`),
      );
    })),
    h("p", {}, h("a", { href: href("/storage") }, "Pools and volumes")),
  ];
}

function networkSummary(networks: Network[]): Child[] {
  if (networks.length === 0) return [empty("No networks yet"), h("p", {}, h("a", { href: href("/networks") }, "Create a network"))];
  return [
    h("ul", { class: "plain" }, ...networks.map((network) =>
      h("li", {}, h("strong", {}, network.name), ` · ${network.mode}`, network.subnet ? ` · ${network.subnet}` : ""))),
    h("p", {}, h("a", { href: href("/networks") }, "Open the network page")),
  ];
}
