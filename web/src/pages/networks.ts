// Networks `#/networks`: list, create, delete. Data: GET /v1/networks, again after
// network, NIC and VM create/delete events; POST /v1/networks, DELETE /v1/networks/{name}.

import { api } from "../api";
import { confirmThenReload } from "../dialog";
import { empty, field, h, messageSlot, row, rowWithButtons, select, setTitle, table, whileBusy } from "../dom";
import { loadLive } from "../live";
import type { Network, NetworkMode, NetworkSpec } from "../types";
import { vmHref } from "./vm-frame";

export async function networksPage(main: HTMLElement, _params: unknown, signal: AbortSignal): Promise<void> {
  setTitle("Networks");
  main.append(h("h1", {}, "Networks"));
  const list = h("div", {});
  const message = messageSlot();

  const name = h("input", { id: "network-name", name: "name", type: "text", autocomplete: "off", spellcheck: false });
  const mode = select("network-mode", [["nat", "NAT"], ["isolated", "Isolated"], ["bridge", "Bridge"]]);
  const subnet = h("input", { id: "network-subnet", name: "subnet", type: "text", spellcheck: false, placeholder: "10.77.1.0/24" });
  const bridge = h("input", { id: "network-bridge", name: "bridge", type: "text", spellcheck: false, placeholder: "br0" });
  const vlan = h("input", { id: "network-vlan", name: "vlan", type: "number", min: 1, max: 4094 });
  const subnetField = field("Subnet", subnet, "Optional: a free one is picked.");
  const bridgeFields = [field("Host bridge", bridge), field("VLAN", vlan, "Optional: 1 to 4094.")];
  const showModeFields = () => {
    const bridged = mode.value === "bridge";
    subnetField.hidden = bridged;
    for (const each of bridgeFields) each.hidden = !bridged;
  };
  mode.addEventListener("change", showModeFields);
  showModeFields();

  const create = h("button", { type: "submit" }, "Create network");
  const form = h(
    "form",
    { class: "inline-form" },
    field("Network name", name),
    field("Mode", mode, "NAT and isolated get a bridge with DHCP of their own (NAT also a way out); bridge joins an existing host bridge."),
    subnetField,
    ...bridgeFields,
    h("div", { class: "actions" }, create),
  );

  const deleteNetwork = (network: Network) =>
    confirmThenReload({
      title: `Delete ${network.name}?`,
      text: network.mode === "bridge"
        ? "The host bridge stays; only Vireo's record of the network goes."
        : "Its bridge, DHCP server and firewall table are removed from the host.",
      confirm: "Delete",
      action: () => api.deleteNetwork(network.name),
      signal,
    }, load, list, message.show);

  const load = async () => {
    const networks = await api.networks(signal);
    list.replaceChildren(networks.length === 0 ? empty("No networks yet") : networkTable(networks, deleteNetwork));
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.clear();
    const spec: NetworkSpec = { name: name.value.trim(), mode: mode.value as NetworkMode };
    if (spec.mode === "bridge") {
      spec.bridge = bridge.value.trim();
      if (vlan.value.trim() !== "") spec.vlan = Number(vlan.value);
    } else if (subnet.value.trim() !== "") {
      spec.subnet = subnet.value.trim();
    }
    void whileBusy(create, async () => {
      await api.createNetwork(spec);
      form.reset();
      showModeFields();
      await load();
    }, message.show);
  });

  main.append(
    list,
    h("section", { "aria-labelledby": "new-network" }, h("h2", { id: "new-network" }, "New network"), form, message.element),
  );
  await loadLive((event) => /^(network|nic)\.|^vm\.(created|deleted)$/.test(event.kind), load, signal);
}

function networkTable(networks: Network[], onDelete: (network: Network) => void): HTMLElement {
  return table(
    "Networks",
    ["Name", "Mode", "Bridge", "Subnet", "Gateway", "DHCP range", "VLAN", "Used by", "Leases", "Actions"],
    networks.map((network) => {
      const cells = rowWithButtons(network.name, [["Delete", "danger-outline", () => onDelete(network)]]);
      const users = network.used_by.flatMap((vm, index) => [index > 0 ? ", " : "", h("a", { href: vmHref(vm) }, vm)]);
      const range = network.dhcp_start && network.dhcp_end ? `${network.dhcp_start} – ${network.dhcp_end}` : "—";
      return row(
        { "data-network": network.name },
        cells.header,
        network.mode,
        h("code", {}, network.bridge),
        network.subnet ?? "—",
        network.gateway ?? "—",
        range,
        network.vlan ?? "—",
        users.length > 0 ? h("td", {}, ...users) : "—",
        h("td", { class: "number" }, network.leases.length),
        cells.buttons,
      );
    }),
  );
}
