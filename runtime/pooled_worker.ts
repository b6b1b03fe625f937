/**
 * One worker as the pool holds it: its connection pool, request and lease bookkeeping, and the
 * usage accounting its limits are checked against.
 */

import { RuntimeError } from "./errors.ts";
import type { LimitState, ProcessUsage, UsageSample, WorkerLimits } from "./limits.ts";
import { UnixHttpClient } from "./proxy.ts";
import type { WorkerProcess } from "./supervisor.ts";

/** What became of one relayed request, for metrics and request logs. */
export interface RequestOutcome {
  request: Request;
  /** The answer's status, or "error" when none came. */
  status: string;
  seconds: number;
  requestId: string | undefined;
}

/** Where a worker is in its life. */
export type WorkerState = "ready" | "retired" | "ended";

/** How long a failed request waits for the worker's exit to learn why it died. */
const EXIT_CLASSIFY_WAIT_MS = 500;

/** Settings of one {@linkcode PooledWorker}. */
export interface PooledWorkerInit {
  id: string;
  key: string;
  /** Short name for log lines. */
  functionName: string;
  process: WorkerProcess;
  limits: WorkerLimits;
  /** Count CPU and wall clock per request (`per_request`, `oneshot`) instead of per worker. */
  limitsPerRequest: boolean;
  /** Abort a request whose response head (or next body chunk) takes longer; 0 = none. */
  idleTimeoutMs: number;
  /** Called when the worker has no request in flight and no lease. */
  onIdle: (worker: PooledWorker) => void;
  /** Called once per request: the answer's status ("error" when none came) and its latency. */
  onRequest?: (outcome: RequestOutcome) => void;
}

/** A worker owned by the pool. */
export class PooledWorker {
  /** Worker id; also the function's `SB_EXECUTION_ID`. */
  readonly id: string;
  readonly key: string;
  readonly functionName: string;
  readonly process: WorkerProcess;
  readonly limits: WorkerLimits;
  /** Which warnings fired and whether the limits retired the worker. */
  readonly limitState: LimitState = { warned: new Set(), retired: false };
  readonly #client: UnixHttpClient;
  readonly #init: PooledWorkerInit;
  #state: WorkerState = "ready";
  #inflight = 0;
  #leased = false;
  #leaseTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #startedAt = performance.now();
  #requestStartedAt = 0;
  #cpuAtRequestStart = 0;
  #lastActivityAt = Date.now();
  #bootRssBytes: number | undefined;
  #usage: ProcessUsage = { cpuMs: 0, rssBytes: 0 };
  #peakRssBytes = 0;

  constructor(init: PooledWorkerInit) {
    this.id = init.id;
    this.key = init.key;
    this.functionName = init.functionName;
    this.process = init.process;
    this.limits = init.limits;
    this.#init = init;
    this.#client = new UnixHttpClient(init.process.socketPath);
  }

  get state(): WorkerState {
    return this.#state;
  }

  /** True when the worker may be handed out: ready, and not being ended by the supervisor. */
  get isReady(): boolean {
    return this.#state === "ready" && this.process.verdict === undefined &&
      this.process.exit === undefined;
  }

  get inflight(): number {
    return this.#inflight;
  }

  get isLeased(): boolean {
    return this.#leased;
  }

  /** True when nothing holds the worker: no request, no lease, no pending `waitUntil`. */
  get isIdle(): boolean {
    return this.#inflight === 0 && !this.#leased && this.process.pendingTasks === 0;
  }

  /** Milliseconds since the last request ended (or since boot). */
  get idleForMs(): number {
    return this.#inflight > 0 ? 0 : Date.now() - this.#lastActivityAt;
  }

  /** The latest sampled usage and the highest resident memory seen. */
  get usage(): ProcessUsage & { peakRssBytes: number } {
    return { ...this.#usage, peakRssBytes: this.#peakRssBytes };
  }

  /**
   * Records a usage sample and returns it relative to what the limits measure: the worker's
   * life, or the current request under per-request limits; memory as growth over boot size.
   */
  record(usage: ProcessUsage): UsageSample {
    this.#usage = usage;
    this.#bootRssBytes ??= usage.rssBytes;
    this.#peakRssBytes = Math.max(this.#peakRssBytes, usage.rssBytes);
    const memoryGrowthBytes = Math.max(0, usage.rssBytes - this.#bootRssBytes);
    if (!this.#init.limitsPerRequest) {
      return {
        cpuMs: usage.cpuMs,
        memoryGrowthBytes,
        elapsedMs: performance.now() - this.#startedAt,
      };
    }
    if (this.#inflight === 0) return { cpuMs: 0, memoryGrowthBytes, elapsedMs: 0 };
    return {
      cpuMs: usage.cpuMs - this.#cpuAtRequestStart,
      memoryGrowthBytes,
      elapsedMs: performance.now() - this.#requestStartedAt,
    };
  }

  /** Reserves the worker for one caller until its request ends or `timeoutMs` passes unused. */
  lease(timeoutMs: number): void {
    this.#leased = true;
    clearTimeout(this.#leaseTimer);
    this.#leaseTimer = setTimeout(() => this.releaseLease(), timeoutMs);
  }

  /** Gives the worker back unused (the lease ran out, or the request was aborted unsent). */
  releaseLease(): void {
    clearTimeout(this.#leaseTimer);
    this.#leaseTimer = undefined;
    if (!this.#leased) return;
    this.#leased = false;
    if (this.#inflight === 0) this.#init.onIdle(this);
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
   * @throws {RuntimeError} `EVALUATION_FAILED`, `WORKER_RETIRED`, `WORKER_KILLED`,
   *   `WORKER_CRASHED` or `IDLE_TIMEOUT`
   */
  async fetch(request: Request, signal?: AbortSignal): Promise<Response> {
    if (signal?.aborted) {
      this.releaseLease();
      signal.throwIfAborted();
    }
    const { evaluationError } = this.process;
    if (evaluationError !== undefined) throw new RuntimeError("EVALUATION_FAILED", evaluationError);
    if (this.#state === "ended") throw this.#gone();
    if (this.#state === "retired" && !this.#leased) {
      throw new RuntimeError("WORKER_RETIRED", "worker has retired");
    }
    if (this.#inflight++ === 0 && this.#init.limitsPerRequest) {
      this.#requestStartedAt = performance.now();
      this.#cpuAtRequestStart = this.#usage.cpuMs;
      this.limitState.warned.clear();
    }
    clearTimeout(this.#leaseTimer);
    let settled = false;
    const onDone = () => {
      if (settled) return;
      settled = true;
      this.#inflight--;
      this.#leased = false;
      this.#lastActivityAt = Date.now();
      if (this.#inflight === 0) this.#init.onIdle(this);
    };
    const startedAt = performance.now();
    let requestId: string | undefined;
    const outcome = (status: string) =>
      this.#init.onRequest?.({
        request,
        status,
        seconds: (performance.now() - startedAt) / 1000,
        requestId,
      });
    try {
      const response = await this.#client.request(request, {
        signal,
        onDone,
        idleTimeoutMs: this.#init.idleTimeoutMs,
        onRequestId: (id) => requestId = id,
      });
      outcome(String(response.status));
      return response;
    } catch (error) {
      onDone();
      outcome("error");
      if (!(error instanceof RuntimeError) || error.code !== "WORKER_CRASHED") throw error;
      throw await this.#whyGone(error);
    }
  }

  /**
   * A broken connection is a crash unless the worker was ended on purpose, or died of its memory
   * limit (the V8 heap-limit abort): then it is a limit, like a supervisor kill. The exit may
   * trail the broken connection by a moment.
   */
  async #whyGone(error: RuntimeError): Promise<RuntimeError> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const exit = await Promise.race([
      this.process.exited,
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), EXIT_CLASSIFY_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (this.process.verdict !== undefined || exit?.reason === "Memory") return this.#gone();
    return error;
  }

  #gone(): RuntimeError {
    const reason = this.process.verdict ?? this.process.exit?.reason;
    if (reason !== undefined && reason !== "Crashed") {
      return new RuntimeError("WORKER_KILLED", `worker was ended (${reason})`);
    }
    return new RuntimeError("WORKER_CRASHED", "user worker not available");
  }
}
