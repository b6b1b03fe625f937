/**
 * Wires one runtime together: the worker pool, the `EdgeRuntime` API, the main service (a user's
 * or the built-in default) and the listener; and takes it apart again on shutdown.
 */

import { fileURLToPath, pathToFileURL } from "node:url";
import type { ResolvedConfig } from "./config.ts";
import {
  createDefaultMainService,
  createJwtVerifier,
  loadFunctionSettings,
} from "./default_main/mod.ts";
import { findEntrypoint } from "./entrypoint.ts";
import { ConfigError } from "./errors.ts";
import { EventStream } from "./events.ts";
import { formatError, type Logger } from "./log.ts";
import { spawnEventProcess } from "./supervisor.ts";
import {
  createEdgeRuntimeApi,
  installMainGlobals,
  loadMainService,
  type RuntimeMetrics,
} from "./main_service.ts";
import type { CapturedServe, ServeCapture } from "./serve_capture.ts";
import { type RunningServer, startServer } from "./server.ts";
import { ALWAYS_DENIED_NET, denyNetEntry } from "./permissions.ts";
import { RuntimeMetrics as RuntimeMetricsRegistry } from "./metrics.ts";
import { createUserWorkersClass } from "./user_workers.ts";
import { type FunctionWatcher, watchFunctions, watchTree } from "./watch.ts";
import { WorkerPool } from "./worker_pool.ts";

/** Time the event worker gets to handle the last events once its stream has ended. */
const EVENT_WORKER_GRACE_MS = 1000;

const EVENT_BOOTSTRAP_PATH = fileURLToPath(
  new URL("../workers/event_bootstrap.ts", import.meta.url),
);

/**
 * Starts the event worker on the module in `dir`.
 *
 * @throws {ConfigError} when the directory has no entry module
 */
async function startEventWorker(dir: string, logger: Logger): Promise<EventStream> {
  const entry = await findEntrypoint(dir);
  if (!entry) {
    throw new ConfigError(
      `Cannot load event worker "${dir}": no index.ts, index.js or package.json main`,
    );
  }
  const process = spawnEventProcess({
    execPath: Deno.execPath(),
    bootstrapPath: EVENT_BOOTSTRAP_PATH,
    entryUrl: pathToFileURL(entry).href,
    logger,
  });
  return new EventStream(process, logger);
}

/** Time workers get to run `beforeunload` handlers at a graceful shutdown. */
const TERMINATION_GRACE_MS = 200;

const BOOTSTRAP_PATH = fileURLToPath(new URL("../workers/bootstrap.ts", import.meta.url));

/** Loopback, metadata and every address of this host: what workers may not reach by default. */
function defaultDenyNet(): string[] {
  const own = Deno.networkInterfaces().map((i) => denyNetEntry(i.address));
  return [...new Set([...ALWAYS_DENIED_NET, ...own])];
}

/** A started runtime. */
export interface Runtime {
  /** The address the listener is bound to. */
  readonly addr: Deno.NetAddr;
  /** Live worker process ids (for diagnostics and tests). */
  workerPids(): number[];
  /**
   * Stops the runtime. With a positive `drainTimeoutMs`, stops accepting connections and waits up
   * to that long for in-flight requests; then ends every worker.
   *
   * @returns whether the drain ran out of time
   */
  shutdown(drainTimeoutMs: number): Promise<{ timedOut: boolean }>;
}

/** Settings of {@linkcode startRuntime}. */
export interface StartRuntimeOptions {
  config: ResolvedConfig;
  logger: Logger;
}

/**
 * Starts the runtime and resolves once it listens.
 *
 * @throws {ConfigError} when the main service cannot be loaded
 */
export async function startRuntime(options: StartRuntimeOptions): Promise<Runtime> {
  const { config, logger } = options;
  const socketDir = await Deno.makeTempDir({ prefix: "edge-runtime-" });
  await Deno.chmod(socketDir, 0o700);
  const counters = new RuntimeMetricsRegistry();
  const events = config.eventWorkerPath
    ? await startEventWorker(config.eventWorkerPath, logger)
    : undefined;
  const pool = new WorkerPool({
    metrics: counters,
    events,
    policy: config.policy,
    maxParallelism: config.maxParallelism,
    requestWaitTimeoutMs: config.requestWaitTimeoutMs,
    userWorkerRequestIdleTimeoutMs: config.userWorkerRequestIdleTimeoutMs ?? 0,
    beforeunloadRatios: config.beforeunloadRatios,
    socketDir,
    bootstrapPath: BOOTSTRAP_PATH,
    denoDir: config.denoDir,
    execPath: Deno.execPath(),
    defaultDenyNet: defaultDenyNet(),
    logger,
  });
  let server: RunningServer | undefined;
  const metrics = (): RuntimeMetrics => {
    const memory = Deno.memoryUsage();
    return {
      mainWorkerHeapStats: {
        totalHeapSize: memory.heapTotal,
        usedHeapSize: memory.heapUsed,
        externalMemory: memory.external,
        mallocedMemory: 0,
        totalPhysicalSize: memory.rss,
      },
      ...pool.metrics(),
      receivedRequestsCount: server?.counters.received ?? 0,
      handledRequestsCount: server?.counters.handled ?? 0,
    };
  };
  const prometheus = () => {
    const memory = Deno.memoryUsage();
    return counters.render({
      workers: pool.workers.map((w) => ({
        functionName: w.functionName,
        rssBytes: w.usage.rssBytes,
        cpuMs: w.usage.cpuMs,
      })),
      receivedRequests: server?.counters.received ?? 0,
      handledRequests: server?.counters.handled ?? 0,
      mainHeapUsedBytes: memory.heapUsed,
      mainRssBytes: memory.rss,
      eventsDropped: events?.dropped ?? 0,
    });
  };
  const api = createEdgeRuntimeApi(
    createUserWorkersClass({ pool, config }),
    metrics,
    prometheus,
  );
  installMainGlobals(api);

  const cleanup = async (unloadGraceMs = 0) => {
    await pool.shutdown(unloadGraceMs);
    // After the pool, so the workers' Shutdown events are in the stream before it ends.
    await events?.close(EVENT_WORKER_GRACE_MS);
    await Deno.remove(socketDir, { recursive: true }).catch(() => {});
  };

  let service: Pick<CapturedServe, "handler" | "onError" | "onListen">;
  let capture: ServeCapture | undefined;
  try {
    if (config.mainServicePath) {
      const loaded = await loadMainService(config.mainServicePath);
      service = loaded.serve;
      capture = loaded.capture;
    } else {
      const settings = await loadFunctionSettings(config.functionsPath);
      const verifyJwt = config.verifyJwt
        ? await createJwtVerifier({ secret: config.jwtSecret, jwks: config.jwks })
        : undefined;
      service = {
        handler: createDefaultMainService({
          functionsPath: config.functionsPath,
          functionEnv: config.functionEnv,
          api,
          logger,
          settings,
          verifyJwt,
          limits: config.functionLimits,
        }),
        onError: undefined,
        onListen: undefined,
      };
    }
    server = await startServer({
      hostname: config.hostname,
      port: config.port,
      service,
      requestIdleTimeoutMs: config.mainWorkerRequestIdleTimeoutMs ?? 0,
      maxRequestBodyBytes: config.maxRequestBodyBytes,
      logger,
    });
  } catch (error) {
    await cleanup();
    throw error;
  }
  const running = server;
  service.onListen?.(running.addr);
  const watchers: FunctionWatcher[] = [];
  if (config.watch && config.mainServicePath) {
    const mainServicePath = config.mainServicePath;
    let generation = 0;
    watchers.push(watchTree([mainServicePath], async () => {
      try {
        const reloaded = await loadMainService(mainServicePath, ++generation);
        capture?.finish();
        capture = reloaded.capture;
        Object.assign(service, reloaded.serve);
        logger.info("[watch] main service reloaded");
      } catch (error) {
        logger.error(
          `[watch] main service not reloaded, the previous one keeps serving: ${
            formatError(error)
          }`,
        );
      }
    }, logger));
  }
  if (config.watch) {
    // The built-in main service's functions folder; a custom main service's workers can live
    // anywhere below the working directory.
    const root = config.mainServicePath ? config.cwd : config.functionsPath;
    try {
      watchers.push(watchFunctions([root], pool, logger));
    } catch (error) {
      logger.warn(`--watch cannot watch "${root}": ${(error as Error).message}`);
    }
  }

  return {
    addr: running.addr,
    workerPids: () => pool.workers.map((w) => w.process.pid),
    async shutdown(drainTimeoutMs) {
      let timedOut = false;
      if (drainTimeoutMs > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const expired = new Promise<"expired">((resolve) => {
          timer = setTimeout(() => resolve("expired"), drainTimeoutMs);
        });
        timedOut = (await Promise.race([running.shutdown(), expired])) === "expired";
        clearTimeout(timer);
      }
      for (const watcher of watchers) watcher.close();
      capture?.finish();
      // After a drain, workers get `beforeunload` (reason "termination") before they are killed.
      await cleanup(drainTimeoutMs > 0 ? TERMINATION_GRACE_MS : 0);
      return { timedOut };
    },
  };
}
