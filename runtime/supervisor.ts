/**
 * One worker process: spawn it, hand it its boot config, race "ready" against "exited", forward
 * its output line by line, keep a stderr tail for boot errors, and always reap it. The only module
 * that calls `Deno.Command`.
 */

import { RuntimeError } from "./errors.ts";
import { parseProcStat, type WorkerEndReason } from "./limits.ts";
import type { Logger } from "./log.ts";
import {
  formatControlLine,
  type FunctionLogLevel,
  parseLogLine,
  parseStatusLine,
  type WorkerBootConfig,
  type WorkerControl,
  type WorkerStatus,
} from "./protocol.ts";

export type { WorkerEndReason };

/** How a worker process ended. */
export interface WorkerExit {
  reason: WorkerEndReason;
  code: number;
  signal: Deno.Signal | null;
  /** True when the supervisor ended it on purpose. */
  killedBySupervisor: boolean;
}

/** What {@linkcode spawnWorker} needs. */
export interface SpawnWorkerOptions {
  /** Name used to prefix the worker's output lines. */
  functionName: string;
  /** The Deno executable. */
  execPath: string;
  /** `deno run ...` arguments. */
  args: string[];
  /** The whole environment of the process. */
  env: Record<string, string>;
  /** Working directory of the process. */
  cwd: string;
  /** The config written to the worker's stdin. */
  boot: WorkerBootConfig;
  /** The worker's private temp dir, removed with everything in it when the worker ends. */
  tempDir: string;
  /** How long the worker may take to report its status. */
  bootTimeoutMs: number;
  /** Aborting ends the boot at once (runtime shutdown). */
  signal?: AbortSignal;
  /** Takes each line of the function's output instead of the logger (the event worker). */
  onLog?: (level: FunctionLogLevel, line: string) => void;
  /**
   * CPU time the worker may use while loading (a module that loops at top level); 0 = no limit.
   * Exceeding it kills the worker with reason `CPUTime`.
   */
  bootCpuLimitMs?: number;
  logger: Logger;
}

/** `EdgeRuntime.waitUntil()` promises a worker reports as pending, and who to tell on change. */
interface TaskCounter {
  count: number;
  onChange: (() => void) | undefined;
}

const STDERR_TAIL_LINES = 20;
/** How often a booting worker's CPU time is checked against its hard limit. */
const BOOT_CPU_SAMPLE_MS = 50;
const MAX_LINE_CHARS = 16 * 1024;
const HEAP_LIMIT_MARK = "Reached heap limit";

/**
 * Turns an exit status and the supervisor's verdict into one reason.
 *
 * @param status the process status
 * @param verdict the reason the supervisor ended it, if it did
 * @param stderrTail the last lines of stderr (a V8 heap-limit crash names itself there)
 */
export function classifyExit(
  status: Deno.CommandStatus,
  verdict: WorkerEndReason | undefined,
  stderrTail: string,
): WorkerExit {
  const base = { code: status.code, signal: status.signal };
  if (verdict) return { ...base, reason: verdict, killedBySupervisor: true };
  if (status.signal === "SIGTRAP" || stderrTail.includes(HEAP_LIMIT_MARK)) {
    return { ...base, reason: "Memory", killedBySupervisor: false };
  }
  return { ...base, reason: "Crashed", killedBySupervisor: false };
}

/** Calls `onLine` for each line of `stream`, cutting over-long lines. */
async function forEachLine(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
): Promise<void> {
  let pending = "";
  try {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      pending += text;
      let newline: number;
      while ((newline = pending.indexOf("\n")) !== -1) {
        onLine(pending.slice(0, newline).replace(/\r$/, ""));
        pending = pending.slice(newline + 1);
      }
      while (pending.length > MAX_LINE_CHARS) {
        onLine(pending.slice(0, MAX_LINE_CHARS));
        pending = pending.slice(MAX_LINE_CHARS);
      }
    }
  } catch {
    // The pipe broke because the process died; what was read has been forwarded.
  }
  if (pending !== "") onLine(pending);
}

/** A live (or ended) worker process. */
export class WorkerProcess {
  readonly pid: number;
  readonly functionName: string;
  readonly socketPath: string;
  /** Set when the module threw while evaluating: every request must fail with it. */
  readonly evaluationError: string | undefined;
  /** Milliseconds from spawn to the status line. */
  readonly bootTimeMs: number;
  readonly #child: Deno.ChildProcess;
  readonly #stdin: WritableStreamDefaultWriter<Uint8Array>;
  readonly #stderrTail: string[];
  readonly #tasks: TaskCounter;
  readonly #encoder = new TextEncoder();
  readonly #exited: Promise<WorkerExit>;
  #verdict: WorkerEndReason | undefined;
  #exit: WorkerExit | undefined;

  constructor(init: {
    functionName: string;
    socketPath: string;
    child: Deno.ChildProcess;
    stdin: WritableStreamDefaultWriter<Uint8Array>;
    stderrTail: string[];
    tasks: TaskCounter;
    tempDir: string;
    pipesDone: Promise<unknown>;
    evaluationError: string | undefined;
    bootTimeMs: number;
  }) {
    this.pid = init.child.pid;
    this.functionName = init.functionName;
    this.socketPath = init.socketPath;
    this.evaluationError = init.evaluationError;
    this.bootTimeMs = init.bootTimeMs;
    this.#child = init.child;
    this.#stdin = init.stdin;
    this.#stderrTail = init.stderrTail;
    this.#tasks = init.tasks;
    this.#exited = Promise.all([init.child.status, init.pipesDone]).then(async ([status]) => {
      await this.#stdin.close().catch(() => {});
      await Deno.remove(this.socketPath).catch(() => {});
      await Deno.remove(init.tempDir, { recursive: true }).catch(() => {});
      this.#exit = classifyExit(status, this.#verdict, this.stderrTail());
      return this.#exit;
    });
  }

  /** Resolves once the process has ended and its pipes are drained. Never rejects. */
  get exited(): Promise<WorkerExit> {
    return this.#exited;
  }

  /** The exit, once known. */
  get exit(): WorkerExit | undefined {
    return this.#exit;
  }

  /** The reason the supervisor gave when it ended the worker, if it did. */
  get verdict(): WorkerEndReason | undefined {
    return this.#verdict;
  }

  /** How many `EdgeRuntime.waitUntil()` promises the function has pending. */
  get pendingTasks(): number {
    return this.#tasks.count;
  }

  /** Called whenever the pending-task count changes. */
  set onPendingTasksChange(callback: (() => void) | undefined) {
    this.#tasks.onChange = callback;
  }

  /** Sends a control message (e.g. `beforeunload`) to the worker; ignored once it has ended. */
  send(control: WorkerControl): void {
    if (this.#exit !== undefined) return;
    this.#stdin.write(this.#encoder.encode(formatControlLine(control))).catch(() => {});
  }

  /** The last lines the worker wrote to stderr. */
  stderrTail(): string {
    return this.#stderrTail.join("\n");
  }

  /**
   * Ends the worker now. SIGKILL, not SIGTERM: a function can ignore SIGTERM, and a worker has
   * nothing of its own to flush: its in-flight requests are ours to fail.
   *
   * @param reason the reason recorded for this end (the first one given wins)
   */
  kill(reason: WorkerEndReason): Promise<WorkerExit> {
    this.#verdict ??= reason;
    if (this.#exit === undefined) {
      try {
        this.#child.kill("SIGKILL");
      } catch {
        // It exited between our check and the signal (kill after exit throws TypeError).
      }
    }
    return this.#exited;
  }
}

/**
 * Starts a worker and waits until it reports its status, exits, or runs out of time.
 *
 * Steps: (1) spawn with piped stdio; (2) write the boot config to stdin and keep stdin open as the
 * worker's lifeline; (3) forward stdout and stderr per line, watching stdout for the status line;
 * (4) race the status against process exit and the boot timeout (waiting on the status alone
 * would hang when the process dies first, as in workers-sdk#14077).
 *
 * @throws {RuntimeError} `BOOT_FAILED` with the real cause, or `BOOT_TIMEOUT`
 */
export async function spawnWorker(options: SpawnWorkerOptions): Promise<WorkerProcess> {
  const { logger, functionName, boot } = options;
  const startedAt = performance.now();
  // 1. Spawn.
  const child = new Deno.Command(options.execPath, {
    args: options.args,
    env: options.env,
    clearEnv: true,
    cwd: options.cwd,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // 2. Boot config, then keep stdin open.
  const stdin = child.stdin.getWriter();
  stdin.write(new TextEncoder().encode(JSON.stringify(boot) + "\n")).catch(() => {});
  // 3. Output.
  let resolveStatus!: (status: WorkerStatus) => void;
  const statusReported = new Promise<WorkerStatus>((resolve) => resolveStatus = resolve);
  const stderrTail: string[] = [];
  const tasks: TaskCounter = { count: 0, onChange: undefined };
  const emit = (line: string, stream: "stdout" | "stderr") => {
    const { level, text } = parseLogLine(line, stream);
    if (options.onLog) options.onLog(level, text);
    else {logger.functionLine(
        functionName,
        level === "Info" || level === "Error" ? text : `${level}: ${text}`,
      );}
  };
  const stdoutDone = forEachLine(child.stdout, (line) => {
    const found = parseStatusLine(line, boot.statusToken);
    if (!found) return emit(line, "stdout");
    if (found.before !== "") emit(found.before, "stdout");
    if (found.status.kind === "pending_tasks") {
      tasks.count = found.status.count;
      tasks.onChange?.();
      return;
    }
    resolveStatus(found.status);
  });
  const stderrDone = forEachLine(child.stderr, (line) => {
    stderrTail.push(line);
    if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
    emit(line, "stderr");
  });
  const pipesDone = Promise.all([stdoutDone, stderrDone]);
  const exitedEarly = Promise.all([child.status, pipesDone]).then(([status]) => status);
  // 4. Race.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timedOut = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), options.bootTimeoutMs);
  });
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener("abort", onAbort, { once: true });
  });
  let cpuWatch: ReturnType<typeof setInterval> | undefined;
  const overCpu = new Promise<"cpu">((resolve) => {
    const limitMs = options.bootCpuLimitMs ?? 0;
    if (limitMs <= 0) return;
    cpuWatch = setInterval(() => {
      try {
        const usage = parseProcStat(Deno.readTextFileSync(`/proc/${child.pid}/stat`));
        if (usage && usage.cpuMs >= limitMs) resolve("cpu");
      } catch {
        // Gone already: the exit wins the race.
      }
    }, BOOT_CPU_SAMPLE_MS);
  });
  const outcome = await Promise.race([
    statusReported,
    exitedEarly,
    timedOut,
    aborted,
    overCpu,
  ]);
  clearTimeout(timer);
  clearInterval(cpuWatch);
  // The shutdown signal is shared by every spawn: a listener left on it would keep this whole
  // scope (child process, pipes) alive for the runtime's lifetime.
  if (onAbort) options.signal?.removeEventListener("abort", onAbort);
  const worker = new WorkerProcess({
    functionName,
    socketPath: boot.socketPath,
    child,
    stdin,
    stderrTail,
    tasks,
    tempDir: options.tempDir,
    pipesDone,
    evaluationError: typeof outcome === "object" && "kind" in outcome &&
        outcome.kind === "evaluation_error"
      ? outcome.message
      : undefined,
    bootTimeMs: performance.now() - startedAt,
  });
  if (outcome === "timeout") {
    await worker.kill("EarlyDrop");
    throw new RuntimeError("BOOT_TIMEOUT", `worker "${functionName}" did not become ready`);
  }
  if (outcome === "cpu") {
    await worker.kill("CPUTime");
    throw new RuntimeError("WORKER_KILLED", "worker exceeded its CPU time limit while loading");
  }
  if (outcome === "aborted") {
    await worker.kill("TerminationRequested");
    throw new RuntimeError("WORKER_KILLED", "the runtime is shutting down");
  }
  if ("kind" in outcome) {
    if (outcome.kind !== "boot_error") return worker;
    await worker.kill("EarlyDrop");
    throw new RuntimeError("BOOT_FAILED", outcome.message);
  }
  const exit = await worker.exited;
  const tail = worker.stderrTail().trim();
  const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
  throw new RuntimeError(
    "BOOT_FAILED",
    `failed to bootstrap runtime: worker process exited with ${how} before it was ready` +
      (tail ? `: ${tail}` : ""),
  );
}

/** A running event worker process. */
export interface EventProcess {
  /** Queues one JSON line; false when too many are still being written (the line is dropped). */
  send(line: string): boolean;
  /** Closes its stdin (its event stream ends), waits up to `graceMs`, then kills it. */
  close(graceMs: number): Promise<void>;
}

/** Lines in flight to the event worker before new ones are dropped. */
const EVENT_BACKLOG_LINES = 10_000;

/**
 * Starts the event worker: `bootstrapPath` with the event module's URL, with the runtime's own
 * permissions and environment (as Supabase's event worker has). Its output is logged with an
 * `[events]` prefix. If it dies, events are dropped (counted by the caller) and requests go on.
 */
export function spawnEventProcess(options: {
  execPath: string;
  bootstrapPath: string;
  entryUrl: string;
  logger: Logger;
}): EventProcess {
  const child = new Deno.Command(options.execPath, {
    args: ["run", "--allow-all", "--no-prompt", options.bootstrapPath, options.entryUrl],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const log = (line: string) => options.logger.info(`[events] ${line}`);
  const pipesDone = Promise.all([forEachLine(child.stdout, log), forEachLine(child.stderr, log)]);
  const stdin = child.stdin.getWriter();
  const encoder = new TextEncoder();
  let inFlight = 0;
  let alive = true;
  const exited = Promise.all([child.status, pipesDone]).then(([status]) => {
    alive = false;
    if (!status.success) options.logger.warn(`event worker exited with code ${status.code}`);
  });
  return {
    send(line) {
      if (!alive || inFlight >= EVENT_BACKLOG_LINES) return false;
      inFlight++;
      stdin.write(encoder.encode(line + "\n")).then(
        () => inFlight--,
        () => {
          inFlight--;
          alive = false;
        },
      );
      return true;
    },
    async close(graceMs) {
      await stdin.close().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<"late">((resolve) =>
        timer = setTimeout(() => resolve("late"), graceMs)
      );
      if ((await Promise.race([exited, late])) === "late") {
        try {
          child.kill("SIGKILL");
        } catch {
          // It ended in the meantime.
        }
        await exited;
      }
      clearTimeout(timer);
    },
  };
}
