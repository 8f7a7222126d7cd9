// Snapshots `#/vms/{name}/snapshots`. Data: GET /v1/vms/{name}/snapshots, again after each
// snapshot event of the VM; POST .../snapshots, POST .../snapshots/{s}/revert, DELETE .../snapshots/{s}.

import { api } from "../api";
import { confirmDialog, confirmThenReload } from "../dialog";
import { empty, field, h, messageSlot, row, rowWithButtons, table, whileBusy } from "../dom";
import { time } from "../format";
import { loadLive } from "../live";
import type { Params } from "../router";
import type { Snapshot } from "../types";
import { vmFrame } from "./vm-frame";

export async function vmSnapshotsPage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  const name = params["name"] ?? "";
  const frame = await vmFrame(main, name, "snapshots", signal);
  const message = messageSlot();
  const list = h("div", {});

  const load = async () => {
    const snapshots = await api.snapshots(name, signal);
    list.replaceChildren(
      snapshots.length === 0
        ? empty("No snapshots yet")
        : table("Snapshots", ["Name", "Kind", "VM was", "Taken", "Actions"], snapshots.map(snapshotRow)),
    );
  };

  const snapshotRow = (snapshot: Snapshot): HTMLTableRowElement => {
    // Both lose something for good (the VM's present state, or the snapshot): ask first.
    const revert = () => {
      message.clear();
      void confirmDialog({
        title: `Revert ${name} to ${snapshot.name}?`,
        text: snapshot.kind === "full"
          ? "The VM's disks and memory go back to the snapshot; what happened since is lost."
          : "The VM's disks go back to the snapshot; what was written since is lost.",
        confirm: "Revert",
        action: () => api.revertSnapshot(name, snapshot.name).then(() => undefined),
        signal,
      });
    };
    const remove = () => {
      message.clear();
      confirmThenReload({
        title: `Delete snapshot ${snapshot.name}?`,
        text: `${name} stays as it is; the snapshot can no longer be reverted to.`,
        confirm: "Delete",
        action: () => api.deleteSnapshot(name, snapshot.name),
        signal,
      }, load, list, message.show);
    };
    const cells = rowWithButtons(snapshot.name, [["Revert", "secondary", revert], ["Delete", "danger-outline", remove]]);
    return row(
      { "data-snapshot": snapshot.name },
      cells.header,
      snapshot.kind === "full" ? "memory and disks" : "disks",
      snapshot.vm_state,
      time(snapshot.created_at),
      cells.buttons,
    );
  };

  const input = h("input", { id: "snapshot-name", name: "snapshot", type: "text", autocomplete: "off", spellcheck: false });
  const create = h("button", { type: "submit" }, "Create snapshot");
  const form = h(
    "form",
    { class: "inline-form" },
    field("Snapshot name", input),
    h("div", { class: "actions" }, create),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.clear();
    void whileBusy(create, async () => {
      await api.createSnapshot(name, input.value.trim());
      input.value = "";
      await load();
    }, message.show);
  });

  frame.body.append(
    h("p", { class: "hint" }, "A running or paused VM keeps its memory too: reverting returns to that very moment. Every writable disk must be qcow2."),
    form,
    message.element,
    list,
  );
  await loadLive((event) => event.vm === name && event.kind.startsWith("snapshot."), load, signal);
}
