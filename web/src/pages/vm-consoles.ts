// The two console pages, each loading its console module only when it opens:
// - serial `#/vms/{name}/console`: xterm.js on the WebSocket /v1/vms/{name}/console;
// - display `#/vms/{name}/display`: noVNC on the WebSocket /v1/vms/{name}/vnc (only VMs
//   whose spec has a display link here).
// Either attaches to the VM's WebSocket while the VM has a QEMU process, and afresh after
// each start.

import type { ConsoleOptions } from "../console/status";
import { alert, empty, errorText, h } from "../dom";
import type { Params } from "../router";
import { token } from "../session";
import type { Vm } from "../types";
import { CONSOLE_STATES, hasDisplay, vmFrame } from "./vm-frame";

type Mount = (container: HTMLElement, options: ConsoleOptions) => () => void;

export async function vmConsolePage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  await consolePage(main, params["name"] ?? "", "console", signal);
}

export async function vmDisplayPage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  await consolePage(main, params["name"] ?? "", "display", signal);
}

const CONSOLES = {
  console: {
    route: "console",
    container: { class: "console serial", "data-testid": "serial-console" },
    load: async (): Promise<Mount> => (await import("../console/serial")).mountSerialConsole,
  },
  display: {
    route: "vnc",
    container: { class: "console display", "data-testid": "vnc-console" },
    load: async (): Promise<Mount> => (await import("../console/vnc")).mountVncConsole,
  },
} as const;

async function consolePage(main: HTMLElement, name: string, kind: keyof typeof CONSOLES, signal: AbortSignal): Promise<void> {
  let follow: ((vm: Vm) => void) | null = null;
  const frame = await vmFrame(main, name, kind, signal, (vm) => follow?.(vm));
  if (kind === "display" && !hasDisplay(frame.vm)) {
    frame.body.append(empty(`${name} has no display. Give it one (std or virtio) when creating a VM.`));
    return;
  }
  const { route, container: attributes, load } = CONSOLES[kind];
  const note = h("div", {});
  const container = h("div", { ...attributes });
  frame.body.append(note, container);
  follow = attachWhileRunning(frame.vm, container, note, route, load, signal);
}

/**
 * The WebSocket of `/v1/vms/{name}/{route}`. A browser cannot send an Authorization
 * header on a WebSocket, so the token rides as a subprotocol the daemon checks and never
 * echoes; it answers with `binary`.
 */
function consoleOptions(name: string, route: "console" | "vnc"): ConsoleOptions {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const kept = token();
  return {
    url: `${scheme}://${location.host}/v1/vms/${encodeURIComponent(name)}/${route}`,
    protocols: kept ? ["binary", `vireo.token.${kept}`] : ["binary"],
  };
}

/**
 * Keeps `load()`'s console mounted in `container` while the VM runs: it is mounted once
 * the VM has a QEMU process and mounted again for each new process (the old socket ended
 * with the old QEMU; a restart may never show the VM stopped in between, so the pid
 * tells). Returns the function to call with every fresh VM.
 */
function attachWhileRunning(
  vm: Vm,
  container: HTMLElement,
  note: HTMLElement,
  route: "console" | "vnc",
  load: () => Promise<Mount>,
  signal: AbortSignal,
): (vm: Vm) => void {
  let unmount: (() => void) | null = null;
  let attachedPid: number | null = null;
  signal.addEventListener("abort", () => unmount?.(), { once: true });

  const attach = async () => {
    let mount: Mount;
    try {
      mount = await load();
    } catch (error) {
      note.replaceChildren(alert(`Cannot load the console: ${errorText(error)}`));
      attachedPid = null;
      return;
    }
    if (signal.aborted) return;
    unmount?.();
    unmount = null;
    container.replaceChildren();
    try {
      unmount = mount(container, consoleOptions(vm.name, route));
    } catch (error) {
      // e.g. a token the browser refuses as a WebSocket subprotocol. What the console
      // built before it failed would show as a console that is still connecting.
      container.replaceChildren();
      note.replaceChildren(alert(`Cannot open the console: ${errorText(error)}`));
      attachedPid = null;
    }
  };

  const follow = (fresh: Vm) => {
    const running = CONSOLE_STATES.includes(fresh.state);
    note.replaceChildren(
      running ? "" : h("p", { class: "hint" }, `${fresh.name} is ${fresh.state}: start it to use this console.`),
    );
    if (running && fresh.pid !== null && fresh.pid !== attachedPid) {
      attachedPid = fresh.pid;
      void attach();
    }
  };
  follow(vm);
  return follow;
}
