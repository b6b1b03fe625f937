/**
 * Workers by service: reuse per servicePath, `forceCreate`, at most `maxParallelism` per service,
 * one boot in flight per service, callers waiting up to the request wait timeout, and the three
 * policies (`per_worker`, `per_request`, `oneshot`).
 */

import { join } from "node:path";
import type { WorkerPolicy } from "./config.ts";
import { RuntimeError } from "./errors.ts";
import { formatError, type Logger } from "./log.ts";
import { planWorkerLaunch, type WorkerLaunchInput } from "./permissions.ts";
import { UnixHttpClient } from "./proxy.ts";
import { spawnWorker, type WorkerEndReason, type WorkerProcess } from "./supervisor.ts";

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
  /** The launch settings that do not depend on the individual worker. */
  launch: Omit<WorkerLaunchInput, "bootstrapPath" | "socketPath" | "executionId" | "denoDir">;
}

/** Settings of a {@linkcode WorkerPool}. */
export interface WorkerPoolOptions {
  policy: WorkerPolicy;
  maxParallelism: number;
  requestWaitTimeoutMs: number;
  /** Private 0700 directory for worker sockets. */
  socketDir: string;
  /** Absolute path of `workers/bootstrap.ts`. */
  bootstrapPath: string;
  denoDir: string;
  execPath: string;
  logger: Logger;
}

/** Counts for `EdgeRuntime.getRuntimeMetrics()`. */
export interface PoolMetrics {
  activeUserWorkersCount: number;
  retiredUserWorkersCount: number;
}

type WorkerState = "ready" | "retired" | "ended";

/** A worker owned by the pool. */
export class PooledWorker {
  /** Worker id; also the function's `SB_EXECUTION_ID`. */
  readonly id: string;
  readonly key: string;
  readonly process: WorkerProcess;
  readonly #client: UnixHttpClient;
  readonly #onIdle: (worker: PooledWorker) => void;
  #state: WorkerState = "ready";
  #inflight = 0;
  #leased = false;
  #leaseTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    init: { id: string; key: string; process: WorkerProcess },
    onIdle: (worker: PooledWorker) => void,
  ) {
    this.id = init.id;
    this.key = init.key;
    this.process = init.process;
    this.#client = new UnixHttpClient(init.process.socketPath);
    this.#onIdle = onIdle;
  }

  get state(): WorkerState {
    return this.#state;
  }

  get inflight(): number {
    return this.#inflight;
  }

  get isLeased(): boolean {
    return this.#leased;
  }

  /** Reserves the worker for one caller until its request ends or `timeoutMs` passes unused. */
  lease(timeoutMs: number): void {
    this.#leased = true;
    clearTimeout(this.#leaseTimer);
    this.#leaseTimer = setTimeout(() => this.#releaseLease(), timeoutMs);
  }

  /** Gives the worker back before use (the caller's request was aborted before it was sent). */
  releaseLease(): void {
    this.#releaseLease();
  }

  #releaseLease(): void {
    clearTimeout(this.#leaseTimer);
    this.#leaseTimer = undefined;
    if (!this.#leased) return;
    this.#leased = false;
    if (this.#inflight === 0) this.#onIdle(this);
  }

  /** Stops handing the worker out; it serves what it has. */
  retire(): void {
    if (this.#state === "ready") this.#state = "retired";
  }

  /** Marks the worker gone and closes its connections. */
  end(): void {
    this.#state = "ended";
    clearTimeout(this.#leaseTimer);
    this.#client.close();
  }

  /**
   * Relays one request to the worker.
   *
   * @throws {RuntimeError} `EVALUATION_FAILED`, `WORKER_RETIRED`, `WORKER_KILLED` or
   *   `WORKER_CRASHED`
   */
  async fetch(request: Request, signal?: AbortSignal): Promise<Response> {
    if (signal?.aborted) {
      this.#releaseLease();
      signal.throwIfAborted();
    }
    const { evaluationError } = this.process;
    if (evaluationError !== undefined) throw new RuntimeError("EVALUATION_FAILED", evaluationError);
    if (this.#state === "ended") throw this.#gone();
    if (this.#state === "retired" && !this.#leased) {
      throw new RuntimeError("WORKER_RETIRED", "worker has retired");
    }
    this.#inflight++;
    clearTimeout(this.#leaseTimer);
    let settled = false;
    const onDone = () => {
      if (settled) return;
      settled = true;
      this.#inflight--;
      this.#leased = false;
      if (this.#inflight === 0) this.#onIdle(this);
    };
    try {
      return await this.#client.request(request, { signal, onDone });
    } catch (error) {
      onDone();
      if (error instanceof RuntimeError && this.process.verdict !== undefined) throw this.#gone();
      throw error;
    }
  }

  #gone(): RuntimeError {
    if (this.process.verdict !== undefined) {
      return new RuntimeError("WORKER_KILLED", `worker was ended (${this.process.verdict})`);
    }
    return new RuntimeError("WORKER_CRASHED", "user worker not available");
  }
}

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
  #retiredCount = 0;
  #closed = false;

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
    for (const worker of slot.workers) if (worker.state === "ready") count++;
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
      for (const worker of slot.workers) if (worker.state === "ready") readyCount++;
      if (readyCount === 0) return undefined;
      let skip = slot.nextIndex++ % readyCount;
      for (const worker of slot.workers) {
        if (worker.state !== "ready") continue;
        if (skip-- === 0) return worker;
      }
      return undefined;
    }
    for (const worker of slot.workers) {
      if (worker.state === "ready" && !worker.isLeased && worker.inflight === 0) {
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
    const id = crypto.randomUUID();
    const socketPath = join(socketDir, `${id}.sock`);
    const plan = planWorkerLaunch({
      ...spec.launch,
      bootstrapPath,
      socketPath,
      executionId: id,
      denoDir,
    });
    slot.booting++;
    const spawning = spawnWorker({
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
      bootTimeoutMs: requestWaitTimeoutMs,
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
      }
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
    const worker = new PooledWorker({ id, key: spec.key, process }, (w) => this.#onIdle(w));
    // Lease before anyone waiting on the slot can see the worker: it belongs to this caller.
    if (this.#options.policy !== "per_worker") worker.lease(requestWaitTimeoutMs);
    slot.workers.add(worker);
    this.#byId.set(id, worker);
    this.#notify(slot);
    logger.debug(
      `worker ${process.pid} for "${spec.functionName}" ready in ${
        process.bootTimeMs.toFixed(1)
      }ms`,
    );
    process.exited.then((exit) => {
      worker.end();
      slot.workers.delete(worker);
      this.#byId.delete(id);
      if (!exit.killedBySupervisor && !this.#closed && process.evaluationError === undefined) {
        const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
        logger.warn(`worker ${process.pid} for "${spec.functionName}" exited with ${how}`);
      }
      this.#notify(slot);
    });
    if (process.evaluationError !== undefined) worker.retire();
    return worker;
  }

  #onIdle(worker: PooledWorker): void {
    const slot = this.#slots.get(worker.key);
    if (this.#options.policy === "oneshot" || worker.state === "retired") {
      this.retire(worker, "EarlyDrop");
    }
    if (slot) this.#notify(slot);
  }

  /**
   * Retires a worker: no new requests; it ends with `reason` once it has none in flight.
   */
  retire(worker: PooledWorker, reason: WorkerEndReason): void {
    if (worker.state === "ready") {
      worker.retire();
      this.#retiredCount++;
    }
    if (worker.inflight === 0 && !worker.isLeased) worker.process.kill(reason);
    const slot = this.#slots.get(worker.key);
    if (slot) this.#notify(slot);
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
      if (worker.state === "ended" || worker.inflight > 0 || worker.isLeased) continue;
      worker.retire();
      worker.process.kill("EarlyDrop");
      count++;
    }
    return count;
  }

  /** Ends every worker and waits until each process is reaped. */
  async shutdown(): Promise<void> {
    this.#closed = true;
    for (const slot of this.#slots.values()) this.#notify(slot);
    // Boots in flight are cut short and reap their own process; then every live worker dies.
    this.#shutdownSignal.abort();
    await Promise.allSettled([...this.#spawning]);
    await Promise.all(
      [...this.#byId.values()].map((worker) => worker.process.kill("TerminationRequested")),
    );
  }
}
