// Shared by the serial console and display pages: attach a console module to the VM's
// WebSocket while the VM has a QEMU process, and attach afresh after each start.

import { alert, errorText, h } from "../dom";
import { token } from "../session";
import type { Vm } from "../types";
import { CONSOLE_STATES } from "./vm-frame";

export interface ConsoleOptions {
  url: string;
  protocols: string[];
}

export type Mount = (container: HTMLElement, options: ConsoleOptions) => () => void;

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
export function attachWhileRunning(
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
      return;
    }
    if (signal.aborted) return;
    unmount?.();
    container.replaceChildren();
    unmount = mount(container, consoleOptions(vm.name, route));
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
