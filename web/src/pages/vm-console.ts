// Serial console `#/vms/{name}/console`: xterm.js on the WebSocket /v1/vms/{name}/console,
// loaded only when this page opens.

import { h } from "../dom";
import type { Params } from "../router";
import type { Vm } from "../types";
import { attachWhileRunning } from "./console-attach";
import { vmFrame } from "./vm-frame";

export async function vmConsolePage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  const name = params["name"] ?? "";
  let follow: ((vm: Vm) => void) | null = null;
  const frame = await vmFrame(main, name, "console", signal, (vm) => follow?.(vm));
  const note = h("div", {});
  const container = h("div", { class: "console serial", "data-testid": "serial-console" });
  frame.body.append(note, container);
  follow = attachWhileRunning(frame.vm, container, note, "console", async () => {
    const { mountSerialConsole } = await import("../console/serial");
    return mountSerialConsole;
  }, signal);
}
