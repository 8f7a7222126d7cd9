// The serial console: xterm.js on the VM's console WebSocket (raw bytes both ways).
// The daemon cannot tell the guest about a new terminal size (it is a serial line), so
// resizing only refits the terminal to the page; full-screen programs in the guest keep
// the size they were told by `stty`.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import { barButton, closeReason, type ConsoleOptions, statusBar } from "./status";

export function mountSerialConsole(container: HTMLElement, opts: ConsoleOptions): () => void {
  const { bar, set } = statusBar();
  const reconnect = barButton("Reconnect", () => connect());
  reconnect.hidden = true;
  const hint = document.createElement("span");
  hint.className = "hint";
  hint.textContent = "Copy: select, then Ctrl+Shift+C. Paste: Ctrl+Shift+V.";
  bar.append(reconnect, hint);

  const host = document.createElement("div");
  host.className = "serial-terminal";
  // A definite height for fit() to fill; it follows the window so the terminal grows and
  // shrinks with the page.
  host.style.cssText = "width:100%;height:clamp(16rem, calc(100vh - 18rem), 60rem)";
  container.append(bar, host);

  const term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
    fontSize: 14,
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(host);

  // Ctrl+Shift+C would open the browser's inspector and Ctrl+C must stay the guest's
  // interrupt, so copying the selection gets the shifted chord. Ctrl+Shift+V needs no
  // help: xterm sends nothing for it, the browser pastes, and xterm turns the paste
  // event into input.
  term.attachCustomKeyEventHandler((event) => {
    const chord = event.ctrlKey && event.shiftKey && !event.altKey && !event.metaKey;
    if (!chord) return true;
    if (event.code === "KeyC") {
      if (event.type === "keydown" && term.hasSelection()) {
        event.preventDefault();
        copy(term.getSelection());
      }
      return false;
    }
    return event.code !== "KeyV";
  });

  const encoder = new TextEncoder();
  let socket: WebSocket | null = null;
  let unmounted = false;

  const send = (bytes: Uint8Array<ArrayBuffer>) => {
    if (socket?.readyState === WebSocket.OPEN) socket.send(bytes);
  };
  const inputs = [
    term.onData((data) => send(encoder.encode(data))),
    // Mouse reports of some modes are bytes, not UTF-8 text: one char per byte.
    term.onBinary((data) => send(Uint8Array.from(data, (c) => c.charCodeAt(0) & 0xff))),
  ];

  const connect = () => {
    set("connecting");
    reconnect.hidden = true;
    const ws = new WebSocket(opts.url, opts.protocols);
    ws.binaryType = "arraybuffer";
    socket = ws;
    ws.onopen = () => {
      set("connected");
      term.focus();
    };
    ws.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
      term.write(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    };
    ws.onclose = (event) => {
      if (unmounted || socket !== ws) return;
      set("disconnected", closeReason(event));
      reconnect.hidden = false;
    };
  };

  let frame = 0;
  const refit = () => {
    cancelAnimationFrame(frame);
    frame = requestAnimationFrame(() => {
      // A hidden or detached host measures 0×0, which fit() would turn into a 1-column terminal.
      if (host.clientWidth > 0 && host.clientHeight > 0) fit.fit();
    });
  };
  const observer = new ResizeObserver(refit);
  observer.observe(host);
  refit();
  // The first measurement may use a fallback font's cell size.
  void document.fonts?.ready.then(() => {
    if (!unmounted) refit();
  });

  connect();

  return () => {
    unmounted = true;
    cancelAnimationFrame(frame);
    observer.disconnect();
    for (const input of inputs) input.dispose();
    const ws = socket;
    socket = null;
    if (ws) ws.onmessage = null;
    // Closing a socket still in its handshake makes Chrome log an error; let it open first.
    if (ws?.readyState === WebSocket.CONNECTING) ws.onopen = () => ws.close();
    else ws?.close();
    term.dispose();
    bar.remove();
    host.remove();
  };
}

/**
 * Puts `text` on the clipboard. The async Clipboard API exists only in secure contexts
 * (https or localhost); elsewhere execCommand("copy") still works from a key handler.
 */
function copy(text: string): void {
  if (navigator.clipboard?.writeText) {
    navigator.clipboard.writeText(text).catch(() => legacyCopy(text));
  } else {
    legacyCopy(text);
  }
}

function legacyCopy(text: string): void {
  const previous = document.activeElement as HTMLElement | null;
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.cssText = "position:fixed;top:0;left:0;opacity:0";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
  previous?.focus();
}
