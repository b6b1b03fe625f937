/**
 * The wire contract between the main runtime and a user worker (`workers/bootstrap.ts`).
 * The supervisor writes one {@linkcode WorkerBootConfig} JSON line to the worker's stdin and keeps
 * stdin open as a lifeline; the worker answers with one status line on stdout. Imports nothing.
 */

/** What the supervisor tells a freshly spawned worker, as one JSON line on its stdin. */
export interface WorkerBootConfig {
  /** Unix socket path the worker serves its function on. */
  socketPath: string;
  /** URL of the user module (`file:` or `data:`), loaded by a computed dynamic import. */
  entryUrl: string;
  /** Nonce that proves a status line comes from the bootstrap, not from user code. */
  statusToken: string;
  /**
   * The only environment variable names the function may see; the bootstrap deletes every other
   * one (Deno's own plumbing) before user code runs.
   */
  visibleEnvNames: string[];
}

/** Marks the worker's status line on stdout; everything else on stdout is the function's output. */
export const STATUS_LINE_PREFIX = "\u001e@edge-runtime-status ";

/** The outcome of loading the user module, reported once by the bootstrap. */
export type WorkerStatus =
  /** The module loaded and its handler serves on the socket. */
  | { token: string; kind: "ready" }
  /** The module graph could not be built (not found, syntax error, bad import): the worker exits. */
  | { token: string; kind: "boot_error"; message: string }
  /** The module threw while evaluating, or registered no handler: requests must fail with it. */
  | { token: string; kind: "evaluation_error"; message: string }
  /** How many `EdgeRuntime.waitUntil()` promises are still pending (sent whenever it changes). */
  | { token: string; kind: "pending_tasks"; count: number };

/** What the supervisor tells a running worker, one JSON line each on its stdin. */
export type WorkerControl =
  /** Dispatch `beforeunload` with this reason (Supabase's `detail.reason`). */
  { type: "beforeunload"; reason: "cpu" | "memory" | "wall_clock" | "early_drop" | "termination" };

/** Formats a control message as the line the supervisor writes. */
export function formatControlLine(control: WorkerControl): string {
  return JSON.stringify(control) + "\n";
}

/** Reads one control line; `undefined` for anything else. */
export function parseControlLine(line: string): WorkerControl | undefined {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (v.type !== "beforeunload") return undefined;
  const reasons = ["cpu", "memory", "wall_clock", "early_drop", "termination"];
  return typeof v.reason === "string" && reasons.includes(v.reason)
    ? { type: "beforeunload", reason: v.reason as WorkerControl["reason"] }
    : undefined;
}

/** Exit code of a worker whose module graph failed to load. */
export const BOOT_ERROR_EXIT_CODE = 70;

/** Formats a status as the line the bootstrap prints. */
export function formatStatusLine(status: WorkerStatus): string {
  return `${STATUS_LINE_PREFIX}${JSON.stringify(status)}\n`;
}

/**
 * Finds a status in one stdout line. Returns the text printed before the marker (function output
 * that did not end in a newline) and the status, or `undefined` when the line carries no valid
 * status for `token`.
 */
export function parseStatusLine(
  line: string,
  token: string,
): { before: string; status: WorkerStatus } | undefined {
  const at = line.indexOf(STATUS_LINE_PREFIX);
  if (at === -1) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line.slice(at + STATUS_LINE_PREFIX.length));
  } catch {
    return undefined;
  }
  if (!isWorkerStatus(value) || value.token !== token) return undefined;
  return { before: line.slice(0, at), status: value };
}

function isWorkerStatus(value: unknown): value is WorkerStatus {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  if (typeof v.token !== "string") return false;
  if (v.kind === "ready") return true;
  if (v.kind === "pending_tasks") return Number.isSafeInteger(v.count) && (v.count as number) >= 0;
  return (v.kind === "boot_error" || v.kind === "evaluation_error") &&
    typeof v.message === "string";
}

/** Checks the boot config the bootstrap reads from stdin. */
export function isWorkerBootConfig(value: unknown): value is WorkerBootConfig {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v.socketPath === "string" && typeof v.entryUrl === "string" &&
    typeof v.statusToken === "string" && Array.isArray(v.visibleEnvNames) &&
    v.visibleEnvNames.every((n) => typeof n === "string");
}

/** Starts a function's console line that is not at its stream's default level. */
export const LEVEL_MARK = "\u001f";

/** Supabase's log levels of a function's console output. */
export type FunctionLogLevel = "Debug" | "Info" | "Warning" | "Error";

/**
 * Reads a line of a function's output: `console.debug` and `console.warn` lines carry a level
 * mark; otherwise stdout is Info and stderr Error.
 */
export function parseLogLine(
  line: string,
  stream: "stdout" | "stderr",
): { level: FunctionLogLevel; text: string } {
  if (line.startsWith(LEVEL_MARK)) {
    const level = line[1] === "D" ? "Debug" : line[1] === "W" ? "Warning" : undefined;
    if (level) return { level, text: line.slice(3) };
  }
  return { level: stream === "stdout" ? "Info" : "Error", text: line };
}
