// VM list `#/vms`. Data: GET /v1/vms once; then, for each event about a VM, GET
// /v1/vms/{name} and that row alone changes (or appears, or goes).

import { api } from "../api";
import { empty, h, setTitle, table } from "../dom";
import { time } from "../format";
import { watchVms } from "../live";
import { href } from "../router";
import type { Vm } from "../types";

export async function vmListPage(main: HTMLElement, _params: unknown, signal: AbortSignal): Promise<void> {
  setTitle("Virtual machines");
  main.append(
    h("div", { class: "page-head" }, h("h1", {}, "Virtual machines"), h("a", { class: "button", href: href("/vms/+new") }, "New VM")),
  );
  const body = h("div", {});
  main.append(body);

  const rows = new Map<string, HTMLTableRowElement>();
  const tbody = h("tbody", {});
  const view = table("Virtual machines", ["Name", "State", "vCPUs", "Memory", "Addresses", "State since"], tbody);
  const showTableOrEmpty = () => body.replaceChildren(rows.size > 0 ? view : empty("No virtual machines yet"));

  const put = (vm: Vm) => {
    let row = rows.get(vm.name);
    if (!row) {
      row = newRow(vm.name);
      rows.set(vm.name, row);
      const after = [...rows.keys()].filter((name) => name > vm.name).sort()[0];
      tbody.insertBefore(row, after === undefined ? null : (rows.get(after) ?? null));
    }
    fillRow(row, vm);
  };

  const ready = watchVms(() => true, (name, vm) => {
    if (vm) {
      put(vm);
    } else {
      rows.get(name)?.remove();
      rows.delete(name);
    }
    showTableOrEmpty();
  }, signal);
  for (const vm of await api.vms(signal)) put(vm);
  showTableOrEmpty();
  ready();
}

function newRow(name: string): HTMLTableRowElement {
  return h(
    "tr",
    { "data-vm": name },
    h("th", { scope: "row" }, h("a", { href: href(`/vms/${encodeURIComponent(name)}`) }, name)),
    h("td", { "data-testid": "vm-state" }),
    h("td", { class: "number" }),
    h("td", {}),
    h("td", {}),
    h("td", {}),
  );
}

/** Rewrites the cells after the name, so a focused link in the row stays focused. */
function fillRow(row: HTMLTableRowElement, vm: Vm): void {
  const [, state, vcpus, memory, addresses, since] = row.cells;
  if (!state || !vcpus || !memory || !addresses || !since) return;
  state.textContent = vm.state;
  state.className = `state state-${vm.state}`;
  vcpus.textContent = String(vm.spec.vcpus ?? 1);
  memory.textContent = String(vm.spec.memory);
  addresses.textContent = vm.nics.map((nic) => nic.ip).filter(Boolean).join(", ") || "—";
  since.textContent = time(vm.state_changed_at);
}
