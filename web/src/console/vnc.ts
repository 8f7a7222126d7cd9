// The graphical console: noVNC on the VM's VNC WebSocket, a raw RFB stream the daemon
// relays from QEMU's VNC server. The page mounts this only while the VM has a QEMU.

import RFB from "@novnc/novnc";
import { barButton, type ConsoleOptions, type State, statusBar } from "./status";

export function mountVncConsole(container: HTMLElement, opts: ConsoleOptions): () => void {
  const { bar, set } = statusBar();
  const cad = barButton("Send Ctrl+Alt+Del", () => {
    rfb?.sendCtrlAltDel();
    rfb?.focus();
  });
  cad.disabled = true;
  const reconnect = barButton("Reconnect", () => connect());
  reconnect.hidden = true;
  bar.append(cad, reconnect);

  const screen = document.createElement("div");
  screen.className = "vnc-screen";
  // noVNC scales the guest's framebuffer into this box, so it needs a definite size;
  // it follows the window.
  screen.style.cssText = "width:100%;height:clamp(16rem, calc(100vh - 18rem), 60rem)";
  container.append(bar, screen);

  let rfb: RFB | null = null;
  // The current session's own state: noVNC logs an error when told to disconnect what is
  // already disconnected, and Chrome does when a socket is closed mid-handshake.
  let rfbState: State = "disconnected";
  let unmounted = false;

  const connect = () => {
    set("connecting");
    reconnect.hidden = true;
    screen.replaceChildren();
    const session = new RFB(screen, opts.url, { wsProtocols: opts.protocols, shared: true });
    rfb = session;
    rfbState = "connecting";
    session.scaleViewport = true;
    session.background = "transparent";
    // A reason the server gave during the handshake outlives the disconnect event that follows.
    let failure: string | null = null;
    session.addEventListener("connect", () => {
      if (rfb !== session) return;
      rfbState = "connected";
      set("connected");
      cad.disabled = false;
      session.focus();
    });
    session.addEventListener("securityfailure", (event) => {
      failure = `security negotiation failed${event.detail.reason ? `: ${event.detail.reason}` : ""}`;
    });
    session.addEventListener("credentialsrequired", () => {
      failure = "the VNC server asks for credentials this console does not have";
      session.disconnect();
    });
    session.addEventListener("disconnect", (event) => {
      if (unmounted || rfb !== session) return;
      rfbState = "disconnected";
      cad.disabled = true;
      reconnect.hidden = false;
      set(
        "disconnected",
        failure ?? (event.detail.clean ? "the display closed (the VM stopped?)" : "the connection was lost or refused"),
      );
    });
  };

  connect();

  return () => {
    unmounted = true;
    const session = rfb;
    rfb = null;
    if (session && rfbState === "connected") session.disconnect();
    else if (session && rfbState === "connecting") session.addEventListener("connect", () => session.disconnect());
    bar.remove();
    screen.remove();
  };
}
