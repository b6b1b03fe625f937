/**
 * Workers by service: reuse per servicePath, `forceCreate`, at most `maxParallelism` per service,
 * one boot in flight per service, callers waiting up to the request wait timeout, the three
 * policies (`per_worker`, `per_request`, `oneshot`), and the limits: one shared sampler reads each
 * worker's CPU time and resident memory from `/proc` and warns, retires or kills.
 */

import { join } from "node:path";
import type { WorkerPolicy } from "./config.ts";
import { RuntimeError } from "./errors.ts";
import {
  type BeforeunloadRatios,
  checkLimits,
  parseProcStat,
  type WorkerLimits,
} from "./limits.ts";
import { formatError, type Logger } from "./log.ts";
import { planWorkerLaunch, type WorkerLaunchInput } from "./permissions.ts";
import type { EventStream } from "./events.ts";
import type { RuntimeMetrics } from "./metrics.ts";
import { PooledWorker } from "./pooled_worker.ts";
import { spawnWorker, type WorkerProcess } from "./supervisor.ts";

export { PooledWorker } from "./pooled_worker.ts";

/** A worker request as the pool needs it: which service, and how to launch a worker for it. */
export interface WorkerSpec {
  /** Pool key: workers are shared between specs with the same key. */
  key: string;
  /** Short name for log lines. */
  functionName: string;
  /** Working directory of the worker. */
  cwd: string;
  /** URL of the user module. */
  entryUrl: string;
  /** Always start a new worker (ignored under `oneshot`). */
  forceCreate: boolean;
  /** Memory, CPU and wall-clock limits. */
  limits: WorkerLimits;
  /** End an idle `per_worker` worker that got no request for this long; 0 = never. */
  requestAbsentTimeoutMs: number;
  /** The launch settings that do not depend on the individual worker. */
  launch: Omit<
    WorkerLaunchInput,
    "bootstrapPath" | "socketPath" | "tempDir" | "executionId" | "denoDir" | "defaultDenyNet"
  >;
}

/** Settings of a {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  policy: WorkerPolicy;
  maxParallelism: number;
  requestWaitTimeoutMs: number;
  /** Abort a request whose response head or next body chunk takes longer; 0 = none. */
  userWorkerRequestIdleTimeoutMs: number;
  /** When `beforeunload` fires, in percent of each limit. */
  beforeunloadRatios: BeforeunloadRatios;
  /** Private 0700 directory for worker sockets. */
  socketDir: string;
  /** Absolute path of `workers/bootstrap.ts`. */
  bootstrapPath: string;
  denoDir: string;
  execPath: string;
  /** Hosts workers may not reach unless their `allow_net` lists hosts (see permissions.ts). */
  defaultDenyNet: readonly string[];
  /** Where requests, cold starts and worker ends are counted. */
  metrics?: RuntimeMetrics;
  /** Where worker events go (`--event-worker`); function output then goes there, not the log. */
  events?: EventStream;
  logger: Logger;
}

/** Counts for `EdgeRuntime.getRuntimeMetrics()`. */
export interface PoolMetrics {
  activeUserWorkersCount: number;
  retiredUserWorkersCount: number;
}

/**
 * How often each worker's CPU and memory are sampled. A synchronous loop is stopped within about
 * this much (plus /proc's 10 ms CPU-time granularity) of its hard limit.
 */
const SAMPLE_INTERVAL_MS = 50;
/** Time a worker gets to run its `beforeunload` handlers before an early drop or shutdown kill. */
const UNLOAD_GRACE_MS = 100;

interface ServiceSlot {
  readonly workers: Set<PooledWorker>;
  booting: number;
  /** The shared boot of a `per_worker` service, joined by concurrent callers. */
  bootInFlight: Promise<PooledWorker> | undefined;
  /** Callers waiting for a worker to free up, end or finish booting. */
  readonly waiters: Set<() => void>;
  nextIndex: number;
}

/** Owns every user worker of the runtime. */
export class WorkerPool {
  readonly #options: WorkerPoolOptions;
  readonly #slots = new Map<string, ServiceSlot>();
  readonly #byId = new Map<string, PooledWorker>();
  readonly #spawning = new Set<Promise<unknown>>();
  readonly #shutdownSignal = new AbortController();
  readonly #endTimers = new Set<ReturnType<typeof setTimeout>>();
  /** Workers told `beforeunload` and waiting out their grace before the kill. */
  readonly #ending = new Set<PooledWorker>();
  readonly #absentTimeoutMs = new Map<PooledWorker, number>();
  #sampler: ReturnType<typeof setInterval> | undefined;
  #retiredCount = 0;
  #closed = false;
  /** True while a worker holds the inspector port (`--inspect`): one worker at a time. */
  #inspectorTaken = false;

  constructor(options: WorkerPoolOptions) {
    this.#options = options;
  }

  /** The worker with this id, if it is still known. */
  get(id: string): PooledWorker | undefined {
    return this.#byId.get(id);
  }

  /** Every worker that has not ended. */
  get workers(): PooledWorker[] {
    return [...this.#byId.values()];
  }

  metrics(): PoolMetrics {
    return {
      activeUserWorkersCount: this.#byId.size,
      retiredUserWorkersCount: this.#retiredCount,
    };
  }

  #slot(key: string): ServiceSlot {
    let slot = this.#slots.get(key);
    if (!slot) {
      slot = {
        workers: new Set(),
        booting: 0,
        bootInFlight: undefined,
        waiters: new Set(),
        nextIndex: 0,
      };
      this.#slots.set(key, slot);
    }
    return slot;
  }

  #notify(slot: ServiceSlot): void {
    for (const wake of slot.waiters) wake();
    slot.waiters.clear();
  }

  /** Live, non-retired workers plus boots in flight: what counts against `maxParallelism`. */
  #occupancy(slot: ServiceSlot): number {
    let count = slot.booting;
    for (const worker of slot.workers) if (worker.isReady) count++;
    return count;
  }

  /**
   * The hot path: a live worker for `key` that can take a request now without booting, or
   * `undefined`. Under `per_request` and `oneshot` the worker is leased to the caller.
   */
  tryAcquireWarm(key: string): PooledWorker | undefined {
    const slot = this.#slots.get(key);
    if (!slot || this.#closed) return undefined;
    const { policy, requestWaitTimeoutMs } = this.#options;
    if (policy === "per_worker") {
      // Round-robin over ready workers without allocating: the n-th ready one, n advancing.
      let readyCount = 0;
      for (const worker of slot.workers) if (worker.isReady) readyCount++;
      if (readyCount === 0) return undefined;
      let skip = slot.nextIndex++ % readyCount;
      for (const worker of slot.workers) {
        if (!worker.isReady) continue;
        if (skip-- === 0) return worker;
      }
      return undefined;
    }
    for (const worker of slot.workers) {
      if (worker.isReady && !worker.isLeased && worker.inflight === 0) {
        worker.lease(requestWaitTimeoutMs);
        return worker;
      }
    }
    return undefined;
  }

  /**
   * Gives a worker for `spec` under the pool's policy, booting one when allowed.
   *
   * @throws {RuntimeError} `POOL_TIMEOUT` when none frees up in time, or the boot's error
   */
  async acquire(spec: WorkerSpec): Promise<PooledWorker> {
    const { policy, requestWaitTimeoutMs } = this.#options;
    const deadline = performance.now() + requestWaitTimeoutMs;
    const slot = this.#slot(spec.key);
    if (spec.forceCreate && policy !== "oneshot") return await this.#boot(slot, spec);
    while (true) {
      this.#assertOpen();
      const warm = this.tryAcquireWarm(spec.key);
      if (warm) return warm;
      if (policy === "per_worker") {
        if (slot.bootInFlight) return await slot.bootInFlight;
        if (this.#occupancy(slot) < this.#options.maxParallelism) {
          slot.bootInFlight = this.#boot(slot, spec).finally(() => slot.bootInFlight = undefined);
          return await slot.bootInFlight;
        }
      } else {
        if (this.#occupancy(slot) < this.#options.maxParallelism) {
          return await this.#boot(slot, spec);
        }
      }
      await this.#waitForChange(slot, deadline);
    }
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new RuntimeError("WORKER_KILLED", "the runtime is shutting down");
    }
  }

  #waitForChange(slot: ServiceSlot, deadline: number): Promise<void> {
    const remainingMs = deadline - performance.now();
    if (remainingMs <= 0) {
      return Promise.reject(
        new RuntimeError("POOL_TIMEOUT", "no worker became available in time"),
      );
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        slot.waiters.delete(wake);
        reject(new RuntimeError("POOL_TIMEOUT", "no worker became available in time"));
      }, remainingMs);
      const wake = () => {
        clearTimeout(timer);
        resolve();
      };
      slot.waiters.add(wake);
    });
  }

  async #boot(slot: ServiceSlot, spec: WorkerSpec): Promise<PooledWorker> {
    const { socketDir, bootstrapPath, denoDir, execPath, logger, requestWaitTimeoutMs } =
      this.#options;
    // Counted before the first await: concurrent callers must see this boot in the occupancy.
    slot.booting++;
    // The inspector port fits one worker; the others run without it until it is free again.
    const inspect = spec.launch.inspect !== undefined && !this.#inspectorTaken
      ? spec.launch.inspect
      : undefined;
    if (inspect) this.#inspectorTaken = true;
    else if (spec.launch.inspect) {
      logger.info(`inspector in use by another worker: "${spec.functionName}" starts without it`);
    }
    const id = crypto.randomUUID();
    const socketPath = join(socketDir, `${id}.sock`);
    const tempDir = join(socketDir, `${id}.tmp`);
    try {
      await Deno.mkdir(tempDir, { mode: 0o700 });
    } catch (error) {
      slot.booting--;
      if (inspect) this.#inspectorTaken = false;
      this.#notify(slot);
      throw new RuntimeError(
        "BOOT_FAILED",
        "failed to bootstrap runtime: cannot create its temp dir",
        {
          cause: error,
        },
      );
    }
    const plan = planWorkerLaunch({
      ...spec.launch,
      inspect,
      bootstrapPath,
      socketPath,
      tempDir,
      executionId: id,
      denoDir,
      defaultDenyNet: this.#options.defaultDenyNet,
    });
    const { events } = this.#options;
    const metadata = { service_path: spec.key, execution_id: id };
    const spawning = spawnWorker({
      onLog: events ? (level, msg) => events.emit("Log", { level, msg }, metadata) : undefined,
      functionName: spec.functionName,
      execPath,
      args: plan.args,
      env: plan.env,
      cwd: spec.cwd,
      boot: {
        socketPath,
        entryUrl: spec.entryUrl,
        statusToken: crypto.randomUUID(),
        visibleEnvNames: plan.visibleEnvNames,
      },
      tempDir,
      bootTimeoutMs: requestWaitTimeoutMs,
      bootCpuLimitMs: spec.limits.cpuTimeHardLimitMs,
      signal: this.#shutdownSignal.signal,
      logger,
    });
    this.#spawning.add(spawning);
    let process: WorkerProcess;
    try {
      process = await spawning;
    } catch (error) {
      if (!this.#closed) {
        logger.error(`worker for "${spec.functionName}" failed to boot: ${formatError(error)}`);
        const msg = error instanceof Error ? `worker boot error: ${error.message}` : String(error);
        events?.emit("BootFailure", { msg }, metadata);
      }
      if (inspect) this.#inspectorTaken = false;
      this.#notify(slot);
      throw error;
    } finally {
      this.#spawning.delete(spawning);
      slot.booting--;
    }
    if (this.#closed) {
      this.#notify(slot);
      await process.kill("TerminationRequested");
      throw new RuntimeError("WORKER_KILLED", "the runtime is shutting down");
    }
    const worker = new PooledWorker({
      id,
      key: spec.key,
      functionName: spec.functionName,
      process,
      limits: spec.limits,
      limitsPerRequest: this.#options.policy !== "per_worker",
      idleTimeoutMs: this.#options.userWorkerRequestIdleTimeoutMs,
      onIdle: (w) => this.#onIdle(w),
      onRequest: (outcome) => {
        this.#options.metrics?.recordRequest(spec.functionName, outcome.status, outcome.seconds);
        if (!logger.isDebugEnabled) return;
        const { pathname } = new URL(outcome.request.url);
        logger.debug(
          `--> ${outcome.request.method} ${pathname} ${outcome.status} ` +
            `${(outcome.seconds * 1000).toFixed(1)}ms fn=${spec.functionName} pid=${process.pid} ` +
            `id=${outcome.requestId ?? "-"}`,
        );
      },
    });
    this.#options.metrics?.recordBoot(spec.functionName, process.bootTimeMs / 1000);
    events?.emit("Boot", { boot_time: Math.round(process.bootTimeMs) }, metadata);
    if (spec.requestAbsentTimeoutMs > 0) {
      this.#absentTimeoutMs.set(worker, spec.requestAbsentTimeoutMs);
    }
    process.onPendingTasksChange = () => this.#endIfIdle(worker);
    // Lease before anyone waiting on the slot can see the worker: it belongs to this caller.
    // Under per_worker the lease only keeps the worker alive for its creator's first request,
    // even if its boot already used up a low CPU soft limit and retired it.
    worker.lease(requestWaitTimeoutMs);
    slot.workers.add(worker);
    this.#byId.set(id, worker);
    this.#sample(worker);
    this.#startSampler();
    this.#notify(slot);
    logger.debug(
      `worker ${process.pid} for "${spec.functionName}" ready in ${
        process.bootTimeMs.toFixed(1)
      }ms`,
    );
    process.exited.then((exit) => {
      if (inspect) this.#inspectorTaken = false;
      this.#options.metrics?.recordEnd(spec.functionName, exit.reason);
      const cpu_time_used = worker.usage.cpuMs;
      if (exit.reason === "Crashed") {
        const exception = process.evaluationError ?? process.stderrTail();
        events?.emit("UncaughtException", { exception, cpu_time_used }, metadata);
      } else {
        const memory_used = { total: worker.usage.peakRssBytes, heap: 0, external: 0 };
        events?.emit("Shutdown", { reason: exit.reason, cpu_time_used, memory_used }, metadata);
      }
      worker.end();
      slot.workers.delete(worker);
      this.#byId.delete(id);
      this.#absentTimeoutMs.delete(worker);
      if (this.#byId.size === 0) this.#stopSampler();
      const { cpuMs, peakRssBytes } = worker.usage;
      const used = `cpu ${cpuMs} ms, peak rss ${(peakRssBytes / 1048576).toFixed(1)} MiB`;
      if (!exit.killedBySupervisor && !this.#closed && process.evaluationError === undefined) {
        const how = exit.reason === "Memory"
          ? "its memory limit"
          : exit.signal
          ? `signal ${exit.signal}`
          : `code ${exit.code}`;
        logger.warn(`worker ${process.pid} for "${spec.functionName}" died of ${how} (${used})`);
      } else {
        logger.debug(
          `worker ${process.pid} for "${spec.functionName}" ended: ${exit.reason} (${used})`,
        );
      }
      this.#notify(slot);
    });
    if (process.evaluationError !== undefined) worker.retire();
    return worker;
  }

  #onIdle(worker: PooledWorker): void {
    if (this.#options.policy === "oneshot") this.retire(worker);
    this.#endIfIdle(worker);
    const slot = this.#slots.get(worker.key);
    if (slot) this.#notify(slot);
  }

  /**
   * Retires a worker: no new requests; it ends (early drop) once nothing holds it.
   */
  retire(worker: PooledWorker): void {
    if (worker.state === "ready") {
      worker.retire();
      this.#retiredCount++;
    }
    this.#endIfIdle(worker);
    const slot = this.#slots.get(worker.key);
    if (slot) this.#notify(slot);
  }

  /** Ends a retired worker once it has no request, lease or pending `waitUntil`. */
  #endIfIdle(worker: PooledWorker): void {
    if (worker.state === "retired" && worker.isLeased === false && worker.isIdle) {
      this.#endGracefully(worker, "EarlyDrop");
    }
  }

  /**
   * Tells the function it is about to go (`beforeunload`, reason `early_drop` or `termination`),
   * then kills it after a short grace; a handler that loops is killed all the same.
   */
  #endGracefully(worker: PooledWorker, reason: "EarlyDrop" | "TerminationRequested"): void {
    if (worker.state === "ended" || worker.process.verdict !== undefined) return;
    if (this.#ending.has(worker)) return;
    this.#ending.add(worker);
    worker.retire();
    worker.process.send({
      type: "beforeunload",
      reason: reason === "EarlyDrop" ? "early_drop" : "termination",
    });
    const timer = setTimeout(() => {
      this.#endTimers.delete(timer);
      worker.process.kill(reason);
    }, UNLOAD_GRACE_MS);
    this.#endTimers.add(timer);
    worker.process.exited.then(() => {
      clearTimeout(timer);
      this.#endTimers.delete(timer);
      this.#ending.delete(worker);
    });
  }

  #startSampler(): void {
    if (this.#sampler !== undefined) return;
    this.#sampler = setInterval(() => {
      for (const worker of this.#byId.values()) this.#sample(worker);
    }, SAMPLE_INTERVAL_MS);
  }

  #stopSampler(): void {
    clearInterval(this.#sampler);
    this.#sampler = undefined;
  }

  /** Reads one worker's usage and applies what its limits call for. */
  #sample(worker: PooledWorker): void {
    if (worker.state === "ended" || worker.process.verdict !== undefined) return;
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${worker.process.pid}/stat`);
    } catch {
      return; // It exited between the exit notice and this tick.
    }
    const usage = parseProcStat(stat);
    if (!usage) return;
    const sample = worker.record(usage);
    const actions = checkLimits(
      worker.limits,
      this.#options.beforeunloadRatios,
      sample,
      worker.limitState,
    );
    for (const action of actions) {
      if (action.kind === "warn") {
        worker.process.send({ type: "beforeunload", reason: action.reason });
      } else if (action.kind === "retire") {
        this.#options.logger.debug(
          `worker ${worker.process.pid} retired: ${action.reason} (cpu ${sample.cpuMs} ms)`,
        );
        this.retire(worker);
      } else {
        this.#options.logger.warn(
          `worker ${worker.process.pid} for "${worker.functionName}" killed: ${action.reason} limit ` +
            `(cpu ${sample.cpuMs} ms, memory +${
              (sample.memoryGrowthBytes / 1048576).toFixed(1)
            } MiB, ` +
            `${Math.round(sample.elapsedMs)} ms)`,
        );
        worker.retire();
        worker.process.kill(action.reason);
        return;
      }
    }
    const absentMs = this.#absentTimeoutMs.get(worker);
    if (
      absentMs !== undefined && worker.state === "ready" && worker.isIdle &&
      worker.idleForMs >= absentMs
    ) {
      this.retire(worker);
    }
  }

  /**
   * Ends every idle worker. As in Supabase, only `per_worker` workers take part: under the other
   * policies idle workers are the pool's spare capacity.
   *
   * @returns how many were ended
   */
  cleanupIdle(): number {
    if (this.#options.policy !== "per_worker") return 0;
    let count = 0;
    for (const worker of this.#byId.values()) {
      // A retired worker is already on its way out (its early drop is under way or pending).
      if (!worker.isReady || !worker.isIdle) continue;
      this.#endGracefully(worker, "EarlyDrop");
      count++;
    }
    return count;
  }

  /**
   * Ends every worker and waits until each process is reaped. With a positive `graceMs`, workers
   * first get `beforeunload` (reason `termination`) and that long to run it.
   */
  async shutdown(graceMs = 0): Promise<void> {
    this.#closed = true;
    for (const slot of this.#slots.values()) this.#notify(slot);
    // Boots in flight are cut short and reap their own process; then every live worker dies.
    this.#shutdownSignal.abort();
    await Promise.allSettled([...this.#spawning]);
    const workers = [...this.#byId.values()];
    if (graceMs > 0 && workers.length > 0) {
      for (const worker of workers) {
        worker.process.send({ type: "beforeunload", reason: "termination" });
      }
      await new Promise((resolve) => setTimeout(resolve, graceMs));
    }
    for (const timer of this.#endTimers) clearTimeout(timer);
    this.#endTimers.clear();
    await Promise.all(workers.map((worker) => worker.process.kill("TerminationRequested")));
    this.#stopSampler();
  }
}
