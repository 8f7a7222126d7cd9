// What both consoles show above the screen: the connection's state and why it ended.
// Kept apart from serial.ts and vnc.ts so that neither chunk pulls in the other's library.

export interface ConsoleOptions {
  url: string;
  protocols: string[];
}

export type State = "connecting" | "connected" | "disconnected";

/** The status line both consoles share: `[data-testid=console-status]` plus the bar it sits in. */
export function statusBar(): {
  bar: HTMLElement;
  set: (state: State, reason?: string) => void;
} {
  const bar = document.createElement("div");
  bar.className = "console-bar";
  const status = document.createElement("span");
  status.className = "console-status";
  status.dataset["testid"] = "console-status";
  status.setAttribute("role", "status");
  bar.append(status);
  const set = (state: State, reason?: string) => {
    status.dataset["state"] = state;
    status.textContent = reason ? `${state}: ${reason}` : state;
  };
  set("connecting");
  return { bar, set };
}

/** A button of the status bar (hidden or disabled until the console's state calls for it). */
export function barButton(text: string, onClick: () => void): HTMLButtonElement {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "secondary";
  button.textContent = text;
  button.addEventListener("click", onClick);
  return button;
}

/** Why a WebSocket closed, in words for the status line. */
export function closeReason(event: CloseEvent): string {
  if (event.reason) return event.reason;
  switch (event.code) {
    case 1000:
      return "the console closed (the VM stopped?)";
    case 1001:
      return "the daemon is going away";
    case 1006:
      return "the connection was lost or refused";
    default:
      return `closed with code ${event.code}`;
  }
}
