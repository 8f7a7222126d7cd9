// What every page of one VM shows above its section: the name, the state, the lifecycle
// buttons, the delete confirmation and the section links, all kept current from events.
// Data: GET /v1/vms/{name}, again after each event about the VM; actions are
// POST /v1/vms/{name}/{start,stop,pause,resume,restart} and DELETE /v1/vms/{name}.

import { type VmAction, api } from "../api";
import { confirmDialog } from "../dialog";
import { alert, h, messageSlot, setTitle } from "../dom";
import { watchVms } from "../live";
import { href, navigate } from "../router";
import type { Vm, VmState } from "../types";

export type Section = "summary" | "console" | "display" | "snapshots";

const SECTION_LABELS: Record<Section, string> = {
  summary: "Summary",
  console: "Serial console",
  display: "Display",
  snapshots: "Snapshots",
};

interface Button {
  label: string;
  /** The states the daemon accepts the action in (vireo-core's state machine). */
  allowed: VmState[];
  run: (vm: Vm) => Promise<Vm>;
}

const BUTTONS: Button[] = [
  { label: "Start", allowed: ["stopped", "crashed", "saved"], run: (vm) => act(vm, "start") },
  { label: "Stop", allowed: ["running", "paused"], run: (vm) => act(vm, "stop") },
  {
    label: "Force stop",
    allowed: ["starting", "running", "paused", "stopping", "migrating"],
    run: (vm) => act(vm, "stop", { force: true }),
  },
  { label: "Pause", allowed: ["running"], run: (vm) => act(vm, "pause") },
  { label: "Resume", allowed: ["paused"], run: (vm) => act(vm, "resume") },
  { label: "Restart", allowed: ["running", "paused"], run: (vm) => act(vm, "restart") },
];
const DELETABLE: VmState[] = ["stopped", "crashed", "saved"];

function act(vm: Vm, action: VmAction, body?: { force: boolean }): Promise<Vm> {
  return api.vmAction(vm.name, action, body);
}

/** States in which the VM has a QEMU process, so its consoles can be attached. */
export const CONSOLE_STATES: VmState[] = ["starting", "running", "paused", "stopping", "migrating"];

export function hasDisplay(vm: Vm): boolean {
  return (vm.spec.display?.vga ?? "none") !== "none";
}

export function vmHref(name: string, section: Section = "summary"): string {
  const base = `/vms/${encodeURIComponent(name)}`;
  return href(section === "summary" ? base : `${base}/${section}`);
}

export interface Frame {
  vm: Vm;
  /** Where the section's own content goes. */
  body: HTMLElement;
}

/**
 * Renders the frame of VM `name` into `main` and calls `onUpdate` with every fresh copy
 * of the VM until `signal` aborts.
 */
export async function vmFrame(
  main: HTMLElement,
  name: string,
  section: Section,
  signal: AbortSignal,
  onUpdate: (vm: Vm) => void = () => {},
): Promise<Frame> {
  setTitle(section === "summary" ? name : `${name}: ${SECTION_LABELS[section]}`);
  const ready = watchVms((changed) => changed === name, (_, fresh) => {
    if (fresh) {
      update(fresh);
      return;
    }
    for (const { element } of buttons) element.disabled = true;
    remove.disabled = true;
    body.replaceChildren(
      alert(`${name} was deleted.`),
      h("p", {}, h("a", { href: href("/vms") }, "Back to the virtual machines")),
    );
  }, signal);
  let vm = await api.vm(name, signal);

  const state = h("span", { "data-testid": "vm-state" });
  const lastError = h("div", {});
  let shownError: string | null = null;
  const message = messageSlot();
  const pending = new Set<string>();
  const buttons = BUTTONS.map((button) => {
    const element = h("button", { type: "button", class: button.label === "Force stop" ? "danger-outline" : null }, button.label);
    element.addEventListener("click", async () => {
      message.clear();
      pending.add(button.label);
      element.setAttribute("aria-busy", "true");
      refreshButtons();
      try {
        update(await button.run(vm));
      } catch (error) {
        message.show(error);
      } finally {
        pending.delete(button.label);
        element.removeAttribute("aria-busy");
        refreshButtons();
      }
    });
    return { button, element };
  });
  const remove = h("button", { type: "button", class: "danger" }, "Delete");
  remove.addEventListener("click", () => {
    message.clear();
    void confirmDialog({
      title: `Delete ${name}?`,
      text: "This removes the VM's definition and its console log. Its volumes stay in their pools.",
      confirm: "Delete",
      action: () => api.deleteVm(name),
      signal,
    }).then((deleted) => {
      if (deleted) navigate("/vms");
    });
  });

  const links = h("ul", {});
  const body = h("div", { class: "vm-section" });
  main.append(
    h("div", { class: "page-head vm" }, h("h1", {}, name), state),
    h("div", { class: "actions", role: "group", "aria-label": "Actions" }, ...buttons.map(({ element }) => element), remove),
    message.element,
    lastError,
    h("nav", { "aria-label": "VM sections", class: "tabs" }, links),
    body,
  );

  function refreshButtons(): void {
    for (const { button, element } of buttons) {
      element.disabled = pending.has(button.label) || !button.allowed.includes(vm.state);
    }
    remove.disabled = !DELETABLE.includes(vm.state);
  }

  function update(fresh: Vm, notify = true): void {
    vm = fresh;
    state.textContent = vm.state;
    state.className = `state state-${vm.state}`;
    refreshButtons();
    // Rebuilt only when it changes: a new role=alert is announced again each time.
    const error = vm.last_error && vm.state === "crashed" ? vm.last_error : null;
    if (error !== shownError) {
      shownError = error;
      lastError.replaceChildren(error ? alert(`Last error: ${error}`) : "");
    }
    const sections: Section[] = ["summary", "console", ...(hasDisplay(vm) ? ["display" as const] : []), "snapshots"];
    links.replaceChildren(...sections.map((each) =>
      h("li", {}, h("a", { href: vmHref(name, each), "aria-current": each === section ? "page" : null }, SECTION_LABELS[each]))));
    if (notify) onUpdate(vm);
  }

  update(vm, false);
  ready();
  return { vm, body };
}
