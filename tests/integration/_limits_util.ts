/**
 * Helpers shared by the limits integration tests: requests through the `supabase-api` main
 * service with `create()` limits as `x-*` headers, and waits on the runtime's log and process table.
 */

import { fetchText, fixtureMain, isAlive, type RuntimeHandle, waitFor } from "../test_utils.ts";

/** The `--main-service` flag for the `supabase-api` fixture. */
export const SUPABASE_API = "--main-service=" + fixtureMain("supabase-api");

/** What `supabase-api` answers: a function's JSON, or `{msg, kind}` for a worker error. */
export interface Answer {
  pid?: number;
  msg?: string;
  kind?: string;
  keys?: string[];
}

/** The 500 body `supabase-api` sends when the supervisor ended the worker. */
export const CANCELLED = {
  msg: "WorkerRequestCancelled: request has been cancelled by supervisor",
  kind: "WorkerRequestCancelled",
};

/** `create()` options, sent as the `x-*` headers `supabase-api` reads. */
export interface Limits {
  softMs?: number;
  hardMs?: number;
  memoryMb?: number;
  timeoutMs?: number;
  /** `context.supervisor.requestAbsentTimeoutMs`. */
  absentMs?: number;
  force?: boolean;
}

function limitHeaders(limits: Limits): Record<string, string> {
  const headers: Record<string, string> = {};
  const set = (name: string, value: number | undefined) => {
    if (value !== undefined) headers[name] = String(value);
  };
  set("x-cpu-time-soft-limit-ms", limits.softMs);
  set("x-cpu-time-hard-limit-ms", limits.hardMs);
  set("x-memory-limit-mb", limits.memoryMb);
  set("x-worker-timeout-ms", limits.timeoutMs);
  set("x-context-supervisor-request-absent-timeout-ms", limits.absentMs);
  if (limits.force) headers["x-force-create"] = "true";
  return headers;
}

/** Sends a request through `supabase-api`; returns the status, the JSON body and the time taken. */
export async function call(
  url: string,
  limits: Limits = {},
): Promise<{ status: number; body: Answer; elapsedMs: number }> {
  const startedAt = performance.now();
  const { status, body } = await fetchText(url, { headers: limitHeaders(limits) });
  const elapsedMs = performance.now() - startedAt;
  try {
    return { status, body: JSON.parse(body), elapsedMs };
  } catch {
    throw new Error(`Expected JSON from ${url}, got ${status}: ${body}`);
  }
}

/** Calls `tryCleanupIdleWorkers` through `supabase-api`; returns its count. */
export async function cleanupIdleWorkers(rt: RuntimeHandle): Promise<number> {
  const { status, body } = await fetchText(`${rt.url}/_internal/cleanup-idle-workers`);
  if (status !== 200) throw new Error(`cleanup-idle-workers answered ${status}: ${body}`);
  return JSON.parse(body).count;
}

/** The runtime's stderr from `mark` (a length of it taken earlier) on. */
export function logSince(rt: RuntimeHandle, mark: number): string {
  return rt.stderr().slice(mark);
}

/** Waits until the runtime's stderr after `mark` matches `pattern`; returns the match. */
export async function waitForLog(
  rt: RuntimeHandle,
  mark: number,
  pattern: RegExp,
): Promise<RegExpExecArray> {
  let match: RegExpExecArray | null = null;
  await waitFor(() => (match = pattern.exec(logSince(rt, mark))) !== null, 3000, `${pattern}`);
  return match!;
}

/** Waits until `pid` is no longer a live process. */
export async function waitForEnd(pid: number): Promise<void> {
  await waitFor(async () => !(await isAlive(pid)), 3000, `worker ${pid} to end`);
}

/** Ends every idle worker and waits until the runtime has no worker left (a clean slate). */
export async function settle(rt: RuntimeHandle): Promise<void> {
  await cleanupIdleWorkers(rt);
  await waitFor(async () => (await rt.childPids()).length === 0, 3000, "every worker to end");
}

/**
 * Waits for the runtime's line (logged with `-v`) saying worker `pid` ended, and returns the
 * reason it gives. Once it is logged, everything the worker printed has been logged too; the
 * process may leave the process table a little earlier.
 */
export async function waitForEndedLine(
  rt: RuntimeHandle,
  mark: number,
  pid: number,
): Promise<string> {
  const [, reason] = await waitForLog(
    rt,
    mark,
    new RegExp(`worker ${pid} for "[^"]+" ended: (\\w+)`),
  );
  return reason;
}
