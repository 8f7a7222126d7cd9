// Storage `#/storage`: pools, the volumes of each, a form for a new volume and deletion.
// Data: GET /v1/pools and /v1/volumes, again after pool, volume, disk and VM create/delete
// events; POST /v1/pools/{pool}/volumes, DELETE /v1/pools/{pool}/volumes/{name}.

import { api } from "../api";
import { confirmThenReload } from "../dialog";
import { empty, field, h, messageSlot, row, rowWithButtons, section, select, setTitle, table, whileBusy } from "../dom";
import { bytes } from "../format";
import { loadLive } from "../live";
import type { Pool, Volume } from "../types";
import { vmHref } from "./vm-frame";

const GIB = 1024 ** 3;

export async function storagePage(main: HTMLElement, _params: unknown, signal: AbortSignal): Promise<void> {
  setTitle("Storage");
  main.append(h("h1", {}, "Storage"));
  const message = messageSlot();
  const pools = h("div", {});
  const volumes = h("div", {});
  const poolChoice = select("volume-pool", []);
  const name = h("input", { id: "volume-name", name: "name", type: "text", autocomplete: "off", spellcheck: false, placeholder: "data.qcow2" });
  const size = h("input", { id: "volume-size", name: "size", type: "number", min: 0, step: "any", value: 10 });
  const format = select("volume-format", [["qcow2", "qcow2"], ["raw", "raw"]]);
  const create = h("button", { type: "submit" }, "Create volume");
  const form = h(
    "form",
    { class: "inline-form" },
    field("Pool", poolChoice),
    field("Volume name", name),
    field("Size (GiB)", size),
    field("Format", format),
    h("div", { class: "actions" }, create),
  );

  main.append(
    section("Pools", {}, pools),
    h("section", { "aria-labelledby": "new-volume" }, h("h2", { id: "new-volume" }, "New volume"), form, message.element),
    h("div", {}, volumes),
  );

  const deleteVolume = (volume: Volume) =>
    confirmThenReload({
      title: `Delete ${volume.pool}/${volume.name}?`,
      text: "Its data is gone for good.",
      confirm: "Delete",
      action: () => api.deleteVolume(volume.pool, volume.name),
      signal,
    }, load, volumes, message.show);

  const load = async () => {
    const [poolList, volumeList] = await Promise.all([api.pools(signal), api.volumes(signal)]);
    pools.replaceChildren(poolList.length === 0 ? empty("No storage pools yet") : poolTable(poolList));
    const chosen = poolChoice.value || "default";
    poolChoice.replaceChildren(...poolList.map((pool) => h("option", { value: pool.name, selected: pool.name === chosen }, pool.name)));
    volumes.replaceChildren(
      ...poolList.map((pool) =>
        section(
          `Volumes in ${pool.name}`,
          {},
          volumeTable(pool.name, volumeList.filter((volume) => volume.pool === pool.name), deleteVolume),
        )),
    );
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.clear();
    void whileBusy(create, async () => {
      const gib = Number(size.value);
      await api.createVolume(poolChoice.value, {
        name: name.value.trim(),
        size: Math.round(gib * GIB),
        format: format.value === "raw" ? "raw" : "qcow2",
      });
      name.value = "";
      await load();
    }, message.show);
  });

  const touchesStorage = /^(pool|volume|disk)\.|^vm\.(created|deleted)$/;
  await loadLive((event) => touchesStorage.test(event.kind), load, signal);
}

function poolTable(pools: Pool[]): HTMLElement {
  return table("Pools", ["Name", "Type", "Path", "Volumes", "Allocated", "Free", "Capacity"], pools.map((pool) =>
    row(
      { "data-pool": pool.name },
      h("th", { scope: "row" }, pool.name),
      pool.type,
      h("code", {}, pool.path),
      h("td", { class: "number" }, pool.volume_count),
      h("td", { class: "number" }, bytes(pool.allocation_bytes)),
      h("td", { class: "number" }, bytes(pool.available_bytes)),
      h("td", { class: "number" }, bytes(pool.capacity_bytes)),
    )));
}

function volumeTable(pool: string, volumes: Volume[], onDelete: (volume: Volume) => void): HTMLElement {
  if (volumes.length === 0) return empty("No volumes yet");
  return table(`Volumes in ${pool}`, ["Name", "Format", "Size", "On disk", "Backing", "Used by", "Actions"], volumes.map((volume) => {
    const cells = rowWithButtons(volume.name, [["Delete", "danger-outline", () => onDelete(volume)]]);
    const users = volume.used_by.flatMap((vm, index) => [index > 0 ? ", " : "", h("a", { href: vmHref(vm) }, vm)]);
    return row(
      { "data-volume": `${volume.pool}/${volume.name}` },
      cells.header,
      volume.format,
      h("td", { class: "number" }, bytes(volume.capacity_bytes)),
      h("td", { class: "number" }, bytes(volume.allocation_bytes)),
      volume.backing ?? "—",
      users.length > 0 ? h("td", {}, ...users) : "—",
      cells.buttons,
    );
  }));
}
