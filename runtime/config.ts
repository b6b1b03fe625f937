/**
 * Runtime configuration: the flags a user may give ({@linkcode RuntimeOptions}) and the frozen,
 * fully defaulted form the rest of the code reads ({@linkcode ResolvedConfig}). Pure.
 */

import { isIP } from "node:net";
import { isAbsolute, join, resolve } from "node:path";
import { ConfigError } from "./errors.ts";
import type { LogLevel } from "./log.ts";

/** How user workers are shared between requests. */
export type WorkerPolicy = "per_worker" | "per_request" | "oneshot";

const POLICIES: readonly WorkerPolicy[] = ["per_worker", "per_request", "oneshot"];

/** Options as they come from the command line (all optional; strings as typed). */
export interface RuntimeOptions {
  /** TCP port. @default 9000 (env `EDGE_RUNTIME_PORT`) */
  port?: string;
  /** Bind address. @default "0.0.0.0" */
  ip?: string;
  /** Directory of a user-written main service; absent means the built-in default. */
  mainService?: string;
  /** Functions folder of the built-in default main service. @default "./functions" */
  functions?: string;
  /** Directory of an event worker module. */
  eventWorker?: string;
  /** Worker policy. @default "per_worker" */
  policy?: string;
  /** Most workers per servicePath. @default the CPU count (1 for oneshot) */
  maxParallelism?: string;
  /** How long `create()` waits for a worker slot, in ms. @default 10000 */
  requestWaitTimeout?: string;
  /** Time for the main service to start its response, in ms. @default none */
  mainWorkerRequestIdleTimeout?: string;
  /** Time for a user worker to start its response, in ms. @default none */
  userWorkerRequestIdleTimeout?: string;
  /** Time for a client to send its request head, in ms. @default none */
  requestReadTimeout?: string;
  /** Largest request body accepted, in bytes; larger ones get 413. @default unlimited */
  maxRequestBodySize?: string;
  /** Globs of static files every worker may read. @default [] */
  static?: string[];
  /** Seconds to drain on SIGTERM. @default 15 */
  gracefulExitTimeout?: string;
  /** Percent of the wall-clock limit at which `beforeunload` fires. @default 90 */
  dispatchBeforeunloadWallClockRatio?: string;
  /** Percent of the CPU hard limit at which `beforeunload` fires. @default 90 */
  dispatchBeforeunloadCpuRatio?: string;
  /** Percent of the memory limit at which `beforeunload` fires. @default 90 */
  dispatchBeforeunloadMemoryRatio?: string;
  /** Inspector address for user workers (`HOST:PORT`). */
  inspect?: string;
  /** File of `NAME=value` lines added to the functions' environment. */
  envFile?: string;
  /** Restart workers when their files change. @default false */
  watch?: boolean;
  /** Skip JWT checks in the built-in main service even when keys are configured. */
  noVerifyJwt?: boolean;
  /** Built-in main service: memory limit per worker. @default 256 (env `EDGE_RUNTIME_MEMORY_LIMIT_MB`) */
  memoryLimitMb?: string;
  /**
   * Built-in main service: wall clock per worker; 0 = none. @default 400000 (env
   * `EDGE_RUNTIME_WORKER_TIMEOUT_MS`, or `SUPABASE_INTERNAL_WALLCLOCK_LIMIT_SEC` in seconds)
   */
  workerTimeoutMs?: string;
  /** Built-in main service: CPU soft limit. @default 1000 (env `EDGE_RUNTIME_CPU_TIME_SOFT_LIMIT_MS`) */
  cpuTimeSoftLimitMs?: string;
  /** Built-in main service: CPU hard limit. @default 2000 (env `EDGE_RUNTIME_CPU_TIME_HARD_LIMIT_MS`) */
  cpuTimeHardLimitMs?: string;
  /** Debug logging. @default false */
  verbose?: boolean;
  /** No logging at all. @default false */
  quiet?: boolean;
}

/** Facts about the host that configuration depends on, passed in so resolution stays pure. */
export interface HostFacts {
  /** Working directory that relative paths are resolved against. */
  cwd: string;
  /** Number of CPUs (the default `maxParallelism`). */
  cpuCount: number;
  /** The process environment. */
  env: Record<string, string>;
  /** Contents of `envFile`, read by the caller when one is given. */
  envFileText?: string;
}

/** Configuration with every default applied. Frozen; read-only after startup. */
export interface ResolvedConfig {
  readonly port: number;
  readonly hostname: string;
  /** Absolute main-service directory, or `undefined` for the built-in default. */
  readonly mainServicePath: string | undefined;
  /** Absolute functions folder of the built-in default main service. */
  readonly functionsPath: string;
  readonly eventWorkerPath: string | undefined;
  readonly policy: WorkerPolicy;
  readonly maxParallelism: number;
  readonly requestWaitTimeoutMs: number;
  readonly mainWorkerRequestIdleTimeoutMs: number | undefined;
  readonly userWorkerRequestIdleTimeoutMs: number | undefined;
  readonly requestReadTimeoutMs: number | undefined;
  /** Largest request body accepted (bytes), or `undefined` for no limit. */
  readonly maxRequestBodyBytes: number | undefined;
  readonly staticPatterns: readonly string[];
  readonly gracefulExitTimeoutMs: number;
  readonly beforeunloadRatios: Readonly<{ wallClock: number; cpu: number; memory: number }>;
  readonly inspect: string | undefined;
  readonly watch: boolean;
  readonly logLevel: LogLevel;
  /** The module cache directory workers read (and the main runtime fills). */
  readonly denoDir: string;
  /** Working directory of the runtime; servicePaths are relative to it. */
  readonly cwd: string;
  /** Environment the built-in default main service gives functions. */
  readonly functionEnv: readonly (readonly [string, string])[];
  /** HS256 secret for the built-in main service's JWT checks (env `JWT_SECRET`). */
  readonly jwtSecret: string | undefined;
  /** Key set for ES256/RS256 checks: JSON, file or URL (env `JWT_JWKS` or `SUPABASE_JWKS`). */
  readonly jwks: string | undefined;
  /** False when `--no-verify-jwt` turns JWT checks off. */
  readonly verifyJwt: boolean;
  /** The limits the built-in main service gives every worker. */
  readonly functionLimits: Readonly<WorkerLimitValues>;
}

/** A worker's memory, CPU and wall-clock limits (0 turns a time limit off). */
export interface WorkerLimitValues {
  memoryLimitMb: number;
  workerTimeoutMs: number;
  cpuTimeSoftLimitMs: number;
  cpuTimeHardLimitMs: number;
}

/** Limits every worker gets unless its `create()` options say otherwise (Supabase's defaults). */
export const DEFAULT_WORKER_LIMITS: Readonly<WorkerLimitValues> = Object.freeze({
  memoryLimitMb: 256,
  workerTimeoutMs: 400_000,
  cpuTimeSoftLimitMs: 1000,
  cpuTimeHardLimitMs: 2000,
});

/** Names removed from the functions' environment by the default main service. */
const HIDDEN_ENV_NAMES = new Set(["HOME", "HOSTNAME", "PATH", "PWD"]);
const HIDDEN_ENV_PREFIXES = ["EDGE_RUNTIME_", "SUPABASE_INTERNAL_"];

function parseInteger(
  value: string | undefined,
  flag: string,
  range: { min: number; max: number },
): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) {
    throw new ConfigError(`Invalid value "${value}" for ${flag}: expected a whole number`);
  }
  const n = Number(value.trim());
  if (n < range.min || n > range.max) {
    throw new ConfigError(
      `Invalid value "${value}" for ${flag}: expected ${range.min} to ${range.max}`,
    );
  }
  return n;
}

const MS_RANGE = { min: 0, max: 2 ** 31 - 1 };
const PERCENT_RANGE = { min: 0, max: 99 };

function resolvePath(cwd: string, path: string): string {
  return isAbsolute(path) ? path : resolve(cwd, path);
}

/** Parses `NAME=value` lines (comments, blank lines, `export `, single or double quotes). */
export function parseEnvFile(text: string, source = "env file"): [string, string][] {
  const pairs: [string, string][] = [];
  const lines = text.split(/\r?\n/);
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const match = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!match) {
      throw new ConfigError(`Cannot parse line ${index + 1} of ${source}: expected NAME=value`);
    }
    let value = match[2];
    const quoted = /^(["'])(.*)\1\s*(?:#.*)?$/.exec(value);
    if (quoted) {
      value = quoted[2];
      if (quoted[1] === '"') value = value.replaceAll("\\n", "\n");
    } else {
      value = value.replace(/\s+#.*$/, "");
    }
    pairs.push([match[1], value]);
  }
  return pairs;
}

function functionEnvFrom(env: Record<string, string>, extra: [string, string][]) {
  const out = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (HIDDEN_ENV_NAMES.has(name)) continue;
    if (HIDDEN_ENV_PREFIXES.some((p) => name.startsWith(p))) continue;
    out.set(name, value);
  }
  for (const [name, value] of extra) out.set(name, value);
  return Object.freeze([...out].map(([n, v]) => Object.freeze([n, v] as const)));
}

function defaultDenoDir(env: Record<string, string>, cwd: string): string {
  if (env.DENO_DIR) return resolvePath(cwd, env.DENO_DIR);
  if (env.XDG_CACHE_HOME) return join(env.XDG_CACHE_HOME, "deno");
  if (env.HOME) return join(env.HOME, ".cache", "deno");
  return join(cwd, ".deno");
}

/**
 * Applies defaults and validates every option.
 *
 * @param options the flags as given
 * @param facts the host facts (cwd, CPU count, environment)
 * @returns the frozen configuration
 * @throws {ConfigError} when a value is malformed or out of range
 */
export function resolveConfig(options: RuntimeOptions, facts: HostFacts): ResolvedConfig {
  const { cwd, env } = facts;
  const port = parseInteger(options.port ?? env.EDGE_RUNTIME_PORT, "--port", {
    min: 0,
    max: 65535,
  }) ?? 9000;
  const hostname = options.ip ?? "0.0.0.0";
  if (isIP(hostname) === 0) {
    throw new ConfigError(`Invalid value "${hostname}" for --ip: expected an IP address`);
  }
  const policyText = options.policy ?? "per_worker";
  if (!POLICIES.includes(policyText as WorkerPolicy)) {
    throw new ConfigError(
      `Invalid value "${policyText}" for --policy: expected ${POLICIES.join(", ")}`,
    );
  }
  const policy = policyText as WorkerPolicy;
  const requestedParallelism = parseInteger(options.maxParallelism, "--max-parallelism", {
    min: 1,
    max: 9998,
  });
  const maxParallelism = policy === "oneshot"
    ? 1
    : requestedParallelism ?? Math.max(1, facts.cpuCount);
  const ratio = (value: string | undefined, flag: string) =>
    parseInteger(value, flag, PERCENT_RANGE) ?? 90;
  const envFilePairs = facts.envFileText === undefined
    ? []
    : parseEnvFile(facts.envFileText, options.envFile);
  const inspect = options.inspect;
  if (inspect !== undefined && !/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(inspect)) {
    throw new ConfigError(`Invalid value "${inspect}" for --inspect: expected HOST:PORT`);
  }
  if (options.verbose && options.quiet) {
    throw new ConfigError("Flags --verbose and --quiet cannot be used together");
  }
  return Object.freeze({
    port,
    hostname,
    mainServicePath: options.mainService === undefined
      ? undefined
      : resolvePath(cwd, options.mainService),
    functionsPath: resolvePath(cwd, options.functions ?? "./functions"),
    eventWorkerPath: options.eventWorker === undefined
      ? undefined
      : resolvePath(cwd, options.eventWorker),
    policy,
    maxParallelism,
    requestWaitTimeoutMs:
      parseInteger(options.requestWaitTimeout, "--request-wait-timeout", MS_RANGE) ?? 10_000,
    mainWorkerRequestIdleTimeoutMs: parseInteger(
      options.mainWorkerRequestIdleTimeout,
      "--main-worker-request-idle-timeout",
      MS_RANGE,
    ),
    userWorkerRequestIdleTimeoutMs: parseInteger(
      options.userWorkerRequestIdleTimeout,
      "--user-worker-request-idle-timeout",
      MS_RANGE,
    ),
    maxRequestBodyBytes: parseInteger(
      options.maxRequestBodySize,
      "--max-request-body-size",
      { min: 0, max: Number.MAX_SAFE_INTEGER },
    ),
    requestReadTimeoutMs: parseInteger(
      options.requestReadTimeout,
      "--request-read-timeout",
      MS_RANGE,
    ),
    staticPatterns: Object.freeze([...(options.static ?? [])]),
    gracefulExitTimeoutMs: (parseInteger(
      options.gracefulExitTimeout,
      "--graceful-exit-timeout",
      { min: 0, max: 86_400 },
    ) ?? 15) * 1000,
    beforeunloadRatios: Object.freeze({
      wallClock: ratio(
        options.dispatchBeforeunloadWallClockRatio,
        "--dispatch-beforeunload-wall-clock-ratio",
      ),
      cpu: ratio(options.dispatchBeforeunloadCpuRatio, "--dispatch-beforeunload-cpu-ratio"),
      memory: ratio(
        options.dispatchBeforeunloadMemoryRatio,
        "--dispatch-beforeunload-memory-ratio",
      ),
    }),
    inspect,
    watch: options.watch ?? false,
    logLevel: options.quiet ? "quiet" : options.verbose ? "debug" : "info",
    denoDir: defaultDenoDir(env, cwd),
    cwd,
    functionEnv: functionEnvFrom(env, envFilePairs),
    jwtSecret: env.JWT_SECRET || undefined,
    jwks: env.JWT_JWKS || env.SUPABASE_JWKS || undefined,
    verifyJwt: !options.noVerifyJwt,
    functionLimits: resolveFunctionLimits(options, env),
  });
}

/** The built-in main service's worker limits: flags, then environment, then Supabase's defaults. */
function resolveFunctionLimits(options: RuntimeOptions, env: Record<string, string>) {
  const limit = (value: string | undefined, flag: string, min: number) =>
    parseInteger(value, flag, { min, max: 2 ** 31 - 1 });
  const wallClockSec = limit(
    env.SUPABASE_INTERNAL_WALLCLOCK_LIMIT_SEC,
    "SUPABASE_INTERNAL_WALLCLOCK_LIMIT_SEC",
    0,
  );
  return Object.freeze({
    memoryLimitMb: limit(
      options.memoryLimitMb ?? env.EDGE_RUNTIME_MEMORY_LIMIT_MB,
      "--memory-limit-mb",
      1,
    ) ?? DEFAULT_WORKER_LIMITS.memoryLimitMb,
    workerTimeoutMs: limit(
      options.workerTimeoutMs ?? env.EDGE_RUNTIME_WORKER_TIMEOUT_MS,
      "--worker-timeout-ms",
      0,
    ) ?? (wallClockSec !== undefined ? wallClockSec * 1000 : DEFAULT_WORKER_LIMITS.workerTimeoutMs),
    cpuTimeSoftLimitMs: limit(
      options.cpuTimeSoftLimitMs ?? env.EDGE_RUNTIME_CPU_TIME_SOFT_LIMIT_MS,
      "--cpu-time-soft-limit-ms",
      0,
    ) ?? DEFAULT_WORKER_LIMITS.cpuTimeSoftLimitMs,
    cpuTimeHardLimitMs: limit(
      options.cpuTimeHardLimitMs ?? env.EDGE_RUNTIME_CPU_TIME_HARD_LIMIT_MS,
      "--cpu-time-hard-limit-ms",
      0,
    ) ?? DEFAULT_WORKER_LIMITS.cpuTimeHardLimitMs,
  });
}
