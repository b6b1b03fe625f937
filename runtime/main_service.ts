/**
 * Runs a user-written main service in this process: installs the `EdgeRuntime` global and the
 * Supabase error classes, makes `Deno.serve` virtual, imports the service and hands back the
 * handler it registered.
 */

import { pathToFileURL } from "node:url";
import { findEntrypoint } from "./entrypoint.ts";
import { ConfigError, installWorkerErrorClasses } from "./errors.ts";
import { tagRequest } from "./request_tags.ts";
import {
  type CapturedServe,
  defaultExportHandler,
  installServeCapture,
  type ServeCapture,
} from "./serve_capture.ts";
import type { UserWorkerClass } from "./user_workers.ts";

/** Supabase's `getRuntimeMetrics()` shape. */
export interface RuntimeMetrics {
  mainWorkerHeapStats: {
    totalHeapSize: number;
    usedHeapSize: number;
    externalMemory: number;
    mallocedMemory: number;
    totalPhysicalSize: number;
  };
  activeUserWorkersCount: number;
  retiredUserWorkersCount: number;
  receivedRequestsCount: number;
  handledRequestsCount: number;
}

/** The `EdgeRuntime` global a main service sees. */
export interface EdgeRuntimeMainApi {
  userWorkers: UserWorkerClass;
  getRuntimeMetrics(): Promise<RuntimeMetrics>;
  /**
   * Marks `destination` (a Request the main service built) as standing for `source` (the one
   * `Deno.serve` gave it), so a WebSocket upgrade relayed with it reaches the client.
   */
  applySupabaseTag(source: Request, destination: Request): void;
  systemMemoryInfo(): Deno.SystemMemoryInfo;
  /** Not in Supabase: every metric in the Prometheus text format, for a `/metrics` route. */
  getPrometheusMetrics(): string;
}

/** Builds the `EdgeRuntime` global from the runtime's parts. */
export function createEdgeRuntimeApi(
  userWorkers: UserWorkerClass,
  metrics: () => RuntimeMetrics,
  prometheus: () => string,
): EdgeRuntimeMainApi {
  return {
    userWorkers,
    getRuntimeMetrics: () => Promise.resolve(metrics()),
    getPrometheusMetrics: prometheus,
    applySupabaseTag(source, destination) {
      if (!(source instanceof Request) || !(destination instanceof Request)) {
        throw new TypeError("Only Request instance can apply the supabase tag");
      }
      tagRequest(source, destination);
    },
    systemMemoryInfo: () => Deno.systemMemoryInfo(),
  };
}

/** Puts `EdgeRuntime` on `globalThis` and the error classes on `Deno.errors`. */
export function installMainGlobals(api: EdgeRuntimeMainApi): void {
  installWorkerErrorClasses();
  Object.defineProperty(globalThis, "EdgeRuntime", {
    value: api,
    writable: true,
    configurable: true,
  });
}

/** A loaded main service. */
export interface LoadedMainService {
  /** The serve call the service made (its handler, `onListen`, `onError`). */
  serve: CapturedServe;
  /** Ends the fake server the service holds (its `finished` promise settles). */
  capture: ServeCapture;
}

/**
 * Imports the main service in `dir` and returns the handler it registered. `generation` > 0
 * re-evaluates the entry module (its own imports stay as first loaded).
 *
 * @throws {ConfigError} when the directory has no entry module, the import fails, or the service
 *   registers no handler
 */
export async function loadMainService(
  dir: string,
  generation = 0,
): Promise<LoadedMainService> {
  const entry = await findEntrypoint(dir);
  if (!entry) {
    throw new ConfigError(
      `Cannot load main service "${dir}": no index.ts, index.js or package.json main`,
    );
  }
  const capture = installServeCapture();
  let module: Record<string, unknown>;
  try {
    // A later generation (--watch) imports the entry under a new URL, so it evaluates again.
    const url = pathToFileURL(entry).href + (generation > 0 ? `?generation=${generation}` : "");
    module = await import(url);
  } catch (error) {
    throw new ConfigError(`Cannot load main service "${entry}": ${String(error)}`, {
      cause: error,
    });
  }
  const handler = capture.current?.handler ?? defaultExportHandler(module);
  if (!handler) {
    throw new ConfigError(
      `Cannot load main service "${entry}": it neither called Deno.serve nor exported a default { fetch }`,
    );
  }
  const serve = capture.current ??
    { handler, onListen: undefined, onError: undefined, port: undefined };
  return { serve, capture };
}
