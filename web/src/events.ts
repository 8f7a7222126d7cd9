// The daemon's event stream (GET /v1/events as Server-Sent Events), shared by all pages.
//
// EventSource cannot send an Authorization header, so the stream is read with fetch().
// It starts after the newest stored event and, when the connection drops, resumes after
// the last event received (Last-Event-ID), so no event is missed across reconnects.

import { api, authHeaders, unauthorized } from "./api";
import type { VireoEvent } from "./types";

type Listener = (event: VireoEvent) => void;

const listeners = new Set<Listener>();

/** Calls `listener` with every event until `signal` aborts. */
export function onEvent(listener: Listener, signal: AbortSignal): void {
  listeners.add(listener);
  signal.addEventListener("abort", () => listeners.delete(listener), { once: true });
}

const FIRST_RETRY_MS = 1000;
const LAST_RETRY_MS = 15000;

/** Follows the stream until `signal` aborts. */
export async function followEvents(signal: AbortSignal): Promise<void> {
  let lastId: number | null = null;
  let retry = FIRST_RETRY_MS;
  while (!signal.aborted) {
    try {
      if (lastId === null) lastId = (await api.latestEvents(signal))[0]?.id ?? 0;
      const response = await fetch("/v1/events", {
        headers: { Accept: "text/event-stream", "Last-Event-ID": String(lastId), ...authHeaders() },
        cache: "no-store",
        signal,
      });
      if (response.status === 401) {
        unauthorized();
        return;
      }
      if (!response.ok || !response.body) throw new Error(`event stream: HTTP ${response.status}`);
      retry = FIRST_RETRY_MS;
      for await (const event of readMessages(response.body)) {
        lastId = event.id;
        for (const listener of listeners) {
          // A page's fault must not cost the stream its connection; it still shows in the console.
          try {
            listener(event);
          } catch (error) {
            reportError(error);
          }
        }
      }
    } catch {
      // Dropped, refused or cut off by an `error` message: try again below, unless stopped.
    }
    if (signal.aborted) return;
    await sleep(retry, signal);
    retry = Math.min(retry * 2, LAST_RETRY_MS);
  }
}

/** The events of an SSE body; ends with the body, throws on an `error` message. */
async function* readMessages(body: ReadableStream<Uint8Array>): AsyncGenerator<VireoEvent> {
  let buffer = "";
  let kind = "";
  let data: string[] = [];
  const reader = body.getReader();
  const decoder = new TextDecoder();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      const lines = buffer.split(/\r\n|\r|\n/);
      // The last piece may be half a line; it waits for the next chunk.
      buffer = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "") {
          if (data.length > 0) {
            if (kind === "error") throw new Error(`event stream: ${data.join("\n")}`);
            yield JSON.parse(data.join("\n")) as VireoEvent;
          }
          kind = "";
          data = [];
          continue;
        }
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") kind = text;
        else if (field === "data") data.push(text);
      }
    }
  } finally {
    // Closes the connection when a reader stops early; after the end (or an abort) it is a no-op.
    reader.cancel().catch(() => undefined);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
