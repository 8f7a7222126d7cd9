// Keeping a page current from the event stream: refetch what an event touched.

import { ApiError, api } from "./api";
import { onEvent } from "./events";
import type { VireoEvent, Vm } from "./types";

/**
 * A trigger for `run` that never overlaps itself: triggers while it runs fold into one
 * more run afterwards, so a burst of events costs at most two requests.
 */
function coalesced(run: () => Promise<void>): () => void {
  let running = false;
  let again = false;
  const loop = async () => {
    try {
      do {
        again = false;
        await run();
      } while (again);
    } finally {
      running = false;
    }
  };
  return () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    // A microtask later, so the triggers of one turn (the events held during a first
    // load, replayed together) cost one request, not two.
    queueMicrotask(() => void loop());
  };
}

/**
 * Subscribes to the events `wanted` accepts, holding them until the returned `ready` is
 * called: a page subscribes before its first load and calls `ready` once that load is
 * shown, so no event falls between the two and none is applied under an older answer.
 */
function heldEvents(wanted: (event: VireoEvent) => boolean, handle: (event: VireoEvent) => void, signal: AbortSignal): () => void {
  let held: VireoEvent[] | null = [];
  onEvent((event) => {
    if (!wanted(event)) return;
    if (held) held.push(event);
    else handle(event);
  }, signal);
  return () => {
    const missed = held ?? [];
    held = null;
    for (const event of missed) handle(event);
  };
}

/**
 * Calls `onChange` with the fresh VM (or null once it is gone) after each event about a
 * VM that `wanted` accepts, until `signal` aborts. Call it before the page's first load
 * and the returned `ready` after it (see `heldEvents`).
 */
export function watchVms(
  wanted: (name: string) => boolean,
  onChange: (name: string, vm: Vm | null) => void,
  signal: AbortSignal,
): () => void {
  const refreshers = new Map<string, () => void>();
  // VMs known to be deleted: no request for them (it would only fail), and an answer
  // that was under way when the deletion came in is dropped.
  const deleted = new Set<string>();
  return heldEvents((event) => event.vm !== undefined && wanted(event.vm), (event) => {
    const name = event.vm;
    if (name === undefined) return;
    if (event.kind === "vm.deleted") {
      deleted.add(name);
      onChange(name, null);
      return;
    }
    if (event.kind === "vm.created") deleted.delete(name);
    if (deleted.has(name)) return;
    let refresh = refreshers.get(name);
    if (!refresh) {
      refresh = coalesced(async () => {
        try {
          const vm = await api.vm(name, signal);
          if (!signal.aborted && !deleted.has(name)) onChange(name, vm);
        } catch (error) {
          if (error instanceof ApiError && error.code === "vm_not_found") onChange(name, null);
          // Anything else (the daemon restarting, a page left): the next event retries.
        }
      });
      refreshers.set(name, refresh);
    }
    refresh();
  }, signal);
}

/**
 * Runs `load` (the page's first load: its errors are the caller's), then again, coalesced,
 * after each event `wanted` accepts until `signal` aborts; events that came during the
 * first load count too.
 */
export async function loadLive(wanted: (event: VireoEvent) => boolean, load: () => Promise<void>, signal: AbortSignal): Promise<void> {
  const refresh = coalesced(async () => {
    try {
      await load();
    } catch {
      // Left the page mid-request, or the daemon is restarting: the next event retries.
    }
  });
  const ready = heldEvents(wanted, refresh, signal);
  await load();
  // Events that came during the first load now fold into one more load.
  ready();
}
