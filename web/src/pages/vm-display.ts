// Display `#/vms/{name}/display`: noVNC on the WebSocket /v1/vms/{name}/vnc, loaded only
// when this page opens. Only VMs whose spec has a display link here.

import { empty, h } from "../dom";
import type { Params } from "../router";
import type { Vm } from "../types";
import { attachWhileRunning } from "./console-attach";
import { hasDisplay, vmFrame } from "./vm-frame";

export async function vmDisplayPage(main: HTMLElement, params: Params, signal: AbortSignal): Promise<void> {
  const name = params["name"] ?? "";
  let follow: ((vm: Vm) => void) | null = null;
  const frame = await vmFrame(main, name, "display", signal, (vm) => follow?.(vm));
  if (!hasDisplay(frame.vm)) {
    frame.body.append(empty(`${name} has no display. Give it one (std or virtio) when creating a VM.`));
    return;
  }
  const note = h("div", {});
  const container = h("div", { class: "console display", "data-testid": "vnc-console" });
  frame.body.append(note, container);
  follow = attachWhileRunning(frame.vm, container, note, "vnc", async () => {
    const { mountVncConsole } = await import("../console/vnc");
    return mountVncConsole;
  }, signal);
}
