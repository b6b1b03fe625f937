/**
 * A self-hosted edge-functions runtime on Deno, compatible with Supabase Edge Runtime's main-service
 * API. This module is the only import target for `main.ts` and the integration tests.
 *
 * @example Start a runtime on the built-in default main service
 * ```ts ignore
 * import { createLogger, resolveConfig, startRuntime } from "./runtime/mod.ts";
 *
 * const config = resolveConfig({ port: "0" }, {
 *   cwd: Deno.cwd(),
 *   cpuCount: navigator.hardwareConcurrency,
 *   env: Deno.env.toObject(),
 * });
 * const runtime = await startRuntime({ config, logger: createLogger("info") });
 * await runtime.shutdown(0);
 * ```
 *
 * @module
 */

export {
  DEFAULT_WORKER_LIMITS,
  type HostFacts,
  parseEnvFile,
  resolveConfig,
  type ResolvedConfig,
  type RuntimeOptions,
  type WorkerPolicy,
} from "./config.ts";
export {
  ConfigError,
  InvalidWorkerCreation,
  InvalidWorkerResponse,
  RuntimeError,
  type RuntimeErrorCode,
  WorkerAlreadyRetired,
  WorkerRequestCancelled,
  WorkerRequestIdleTimeout,
} from "./errors.ts";
export { createLogger, type Logger, type LogLevel, NULL_LOGGER, printLine } from "./log.ts";
export type { EdgeRuntimeMainApi, RuntimeMetrics } from "./main_service.ts";
export { type Runtime, startRuntime, type StartRuntimeOptions } from "./runtime.ts";
export {
  junitXml,
  listFunctions,
  runSmoke,
  type RunSmokeOptions,
  type SmokeCase,
  type SmokeResult,
} from "./smoke.ts";
export type {
  UserWorkerClass,
  UserWorkerCreateOptions,
  UserWorkerFetchOptions,
  UserWorkerInstance,
  WorkerStats,
} from "./user_workers.ts";
