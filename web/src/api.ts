// Calls to the daemon's REST API: bearer token, JSON in and out, errors as ApiError.

import { forgetToken, token } from "./session";
import type {
  ErrorBody,
  HostInfo,
  Network,
  NetworkSpec,
  Pool,
  Snapshot,
  VireoEvent,
  Vm,
  VmHistory,
  VmSpec,
  Volume,
} from "./types";

/** A failed request: the daemon's `{code, message, field?}`, or one made up when it could not be reached. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly field: string | undefined;

  constructor(status: number, body: ErrorBody) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.code = body.code;
    this.field = body.field;
  }
}

let onUnauthorized: () => void = () => {};

/** What to do when the daemon refuses the kept token (or its absence): sign in again. */
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

/** Clears the kept token and hands over to the sign-in page. */
export function unauthorized(): void {
  forgetToken();
  onUnauthorized();
}

/** The Authorization header for `candidate` (the kept token unless given); none without a token. */
export function authHeaders(candidate: string | null = token()): Record<string, string> {
  return candidate ? { Authorization: `Bearer ${candidate}` } : {};
}

export interface RequestOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** Try this token instead of the kept one; a refusal then does not sign out. */
  token?: string | null;
}

export async function request<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json", ...authHeaders(options.token) };
  const init: RequestInit = { method, headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  if (options.signal) init.signal = options.signal;
  let response: Response;
  let text: string;
  try {
    response = await fetch(path, init);
    // Inside the try: the connection can also drop while the body is read.
    text = response.status === 204 ? "" : await response.text();
  } catch (err) {
    if (options.signal?.aborted) throw err;
    throw new ApiError(0, { code: "unreachable", message: "Cannot reach the Vireo daemon. Is it running?" });
  }
  if (response.status === 204) return undefined as T;
  if (response.ok) {
    try {
      return JSON.parse(text) as T;
    } catch {
      // Something in between (a proxy's page) answered instead of the daemon.
      throw new ApiError(response.status, { code: "http_error", message: "The server's answer was not Vireo's JSON" });
    }
  }
  const error = new ApiError(response.status, errorBody(response, text));
  if (response.status === 401 && options.token === undefined) unauthorized();
  throw error;
}

function errorBody(response: Response, text: string): ErrorBody {
  try {
    const body = JSON.parse(text) as Partial<ErrorBody>;
    if (typeof body.code === "string" && typeof body.message === "string") return body as ErrorBody;
  } catch {
    // Not JSON: a proxy in between answered; its status line is all there is to say.
  }
  return { code: "http_error", message: `The server answered ${response.status} ${response.statusText}`.trim() };
}

const vmPath = (name: string) => `/v1/vms/${encodeURIComponent(name)}`;
const poolPath = (pool: string) => `/v1/pools/${encodeURIComponent(pool)}`;

export type VmAction = "start" | "stop" | "pause" | "resume" | "restart";

export const api = {
  host: (options?: RequestOptions) => request<HostInfo>("GET", "/v1/host", options),

  vms: (signal?: AbortSignal) => request<Vm[]>("GET", "/v1/vms", signalOnly(signal)),
  vm: (name: string, signal?: AbortSignal) => request<Vm>("GET", vmPath(name), signalOnly(signal)),
  createVm: (spec: VmSpec) => request<Vm>("POST", "/v1/vms", { body: spec }),
  deleteVm: (name: string) => request<void>("DELETE", vmPath(name)),
  vmAction: (name: string, action: VmAction, body?: { force: boolean }) =>
    request<Vm>("POST", `${vmPath(name)}/${action}`, body ? { body } : {}),
  history: (name: string, signal?: AbortSignal) =>
    request<VmHistory>("GET", `${vmPath(name)}/history`, signalOnly(signal)),

  snapshots: (vm: string, signal?: AbortSignal) =>
    request<Snapshot[]>("GET", `${vmPath(vm)}/snapshots`, signalOnly(signal)),
  createSnapshot: (vm: string, name: string) =>
    request<Snapshot>("POST", `${vmPath(vm)}/snapshots`, { body: { name } }),
  revertSnapshot: (vm: string, name: string) =>
    request<Vm>("POST", `${vmPath(vm)}/snapshots/${encodeURIComponent(name)}/revert`),
  deleteSnapshot: (vm: string, name: string) =>
    request<void>("DELETE", `${vmPath(vm)}/snapshots/${encodeURIComponent(name)}`),

  pools: (signal?: AbortSignal) => request<Pool[]>("GET", "/v1/pools", signalOnly(signal)),
  volumes: (signal?: AbortSignal) => request<Volume[]>("GET", "/v1/volumes", signalOnly(signal)),
  createVolume: (pool: string, body: { name: string; size: number; format: "qcow2" | "raw" }) =>
    request<Volume>("POST", `${poolPath(pool)}/volumes`, { body }),
  deleteVolume: (pool: string, name: string) =>
    request<void>("DELETE", `${poolPath(pool)}/volumes/${encodeURIComponent(name)}`),

  networks: (signal?: AbortSignal) => request<Network[]>("GET", "/v1/networks", signalOnly(signal)),
  createNetwork: (spec: NetworkSpec) => request<Network>("POST", "/v1/networks", { body: spec }),
  deleteNetwork: (name: string) => request<void>("DELETE", `/v1/networks/${encodeURIComponent(name)}`),

  latestEvents: (signal?: AbortSignal) => request<VireoEvent[]>("GET", "/v1/events?limit=1", signalOnly(signal)),
};

function signalOnly(signal: AbortSignal | undefined): RequestOptions {
  return signal ? { signal } : {};
}
