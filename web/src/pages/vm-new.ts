// Create form `#/vms/+new` (`+` cannot start a VM name, so no VM page is shadowed). Data: GET /v1/networks and /v1/volumes for the choices;
// POST /v1/vms with the spec. The daemon validates: its `field` puts the message beside
// the control at fault.

import { ApiError, api } from "../api";
import { errorText, field, h, messageSlot, select, setTitle, whileBusy } from "../dom";
import { bytes } from "../format";
import { clearFieldErrors, showFieldError } from "../forms";
import { navigate } from "../router";
import type { Vga, VmSpec } from "../types";

export async function vmNewPage(main: HTMLElement, _params: unknown, signal: AbortSignal): Promise<void> {
  setTitle("New virtual machine");
  main.append(h("h1", {}, "New virtual machine"));
  const [networks, volumes] = await Promise.all([api.networks(signal), api.volumes(signal)]);

  const name = h("input", { id: "vm-name", name: "name", type: "text", autocomplete: "off", spellcheck: false });
  const vcpus = h("input", { id: "vm-vcpus", name: "vcpus", type: "number", min: 1, max: 255, value: 1 });
  const memory = h("input", { id: "vm-memory", name: "memory", type: "number", min: 16, step: 1, value: 256 });
  const kernel = h("input", { id: "vm-kernel", name: "kernel", type: "text", spellcheck: false, placeholder: "/path/to/vmlinuz" });
  const initrd = h("input", { id: "vm-initrd", name: "initrd", type: "text", spellcheck: false, placeholder: "/path/to/initrd.img" });
  const cmdline = h("input", { id: "vm-cmdline", name: "cmdline", type: "text", spellcheck: false, placeholder: "console=ttyS0" });
  const display = select("vm-display", [["none", "None"], ["std", "Standard VGA (std)"], ["virtio", "virtio-gpu (virtio)"]]);
  const network = select("vm-network", [["", "None"], ...networks.map((each): [string, string] => [each.name, `${each.name} (${each.mode})`])]);
  const free = volumes.filter((volume) => volume.used_by.length === 0);
  const disk = select("vm-disk", [
    ["", "None"],
    ...free.map((volume): [string, string] => [
      `${volume.pool}/${volume.name}`,
      `${volume.pool}/${volume.name} (${bytes(volume.capacity_bytes)} ${volume.format})`,
    ]),
  ]);

  // Which control an API field path belongs to; the first prefix that fits wins.
  const controls: [prefix: string, control: HTMLInputElement | HTMLSelectElement][] = [
    ["name", name],
    ["vcpus", vcpus],
    ["memory", memory],
    ["boot.initrd", initrd],
    ["boot.cmdline", cmdline],
    ["boot", kernel],
    ["display", display],
    ["nics", network],
    ["disks", disk],
  ];

  const message = messageSlot();
  const submit = h("button", { type: "submit" }, "Create VM");
  const form = h(
    "form",
    { class: "stack", novalidate: true },
    message.element,
    h(
      "fieldset",
      {},
      h("legend", {}, "Machine"),
      field("Name", name, "Letters, digits, - and _; up to 63 characters."),
      field("vCPUs", vcpus),
      field("Memory (MiB)", memory),
      field("Display", display, "A graphical console (VNC); none leaves only the serial console."),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Boot"),
      field("Kernel", kernel, "Path on the daemon's host. Leave empty to boot from the disk."),
      field("Initrd", initrd),
      field("Kernel command line", cmdline),
    ),
    h(
      "fieldset",
      {},
      h("legend", {}, "Devices"),
      field("Network", network, networks.length === 0 ? "No networks yet: create one under Networks." : undefined),
      field("Disk", disk, free.length === 0 ? "No unused volumes: create one under Storage." : undefined),
    ),
    h("div", { class: "actions" }, submit),
  );
  main.append(form);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    message.clear();
    clearFieldErrors(form);
    const missing = (
      [[vcpus, "Enter the number of vCPUs."], [memory, "Enter the memory in MiB."]] as const
    ).filter(([control]) => control.value.trim() === "");
    if (missing.length > 0) {
      for (const [control, text] of missing) showFieldError(control, text);
      missing[0]?.[0].focus();
      return;
    }
    const spec: VmSpec = { name: name.value.trim(), vcpus: Number(vcpus.value), memory: `${memory.value.trim()}MiB` };
    const boot = { kernel: kernel.value.trim(), initrd: initrd.value.trim(), cmdline: cmdline.value.trim() };
    if (boot.kernel || boot.initrd || boot.cmdline) {
      spec.boot = Object.fromEntries(Object.entries(boot).filter(([, value]) => value !== ""));
    }
    if (display.value !== "none") spec.display = { vga: display.value as Vga };
    if (network.value) spec.nics = [{ network: network.value }];
    if (disk.value) spec.disks = [{ volume: disk.value }];
    void whileBusy(
      submit,
      async () => {
        const vm = await api.createVm(spec);
        navigate(`/vms/${encodeURIComponent(vm.name)}`);
      },
      (error) => {
        const control = error instanceof ApiError && error.field ? controlFor(controls, error.field) : undefined;
        if (control) {
          showFieldError(control, errorText(error));
          control.focus();
        } else {
          message.show(error);
          message.element.scrollIntoView({ block: "nearest" });
        }
      },
    );
  });
}

function controlFor(
  controls: [string, HTMLInputElement | HTMLSelectElement][],
  path: string,
): HTMLInputElement | HTMLSelectElement | undefined {
  return controls.find(([prefix]) => path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`))?.[1];
}
