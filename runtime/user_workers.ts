/**
 * `EdgeRuntime.userWorkers`: Supabase's main-service API. Validates `create()` options, resolves
 * them into a pool {@linkcode WorkerSpec}, and is the one place where internal errors become the
 * Supabase error classes.
 */

import { globSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { DEFAULT_WORKER_LIMITS, type ResolvedConfig } from "./config.ts";
import { findDenoConfig, findEntrypoint, isDirectory } from "./entrypoint.ts";
import { RuntimeError, toWorkerApiError } from "./errors.ts";
import type { WorkerPermissions } from "./permissions.ts";
import type { PooledWorker, WorkerPool, WorkerSpec } from "./worker_pool.ts";

/** `create()` options, with Supabase's names. Unknown keys are ignored. */
export interface UserWorkerCreateOptions {
  /** Function directory, relative to the runtime's working directory or absolute. */
  servicePath?: string;
  /** The only environment the function sees (plus `SB_EXECUTION_ID`). @default [] */
  envVars?: [string, string][];
  /** V8 heap limit. @default 256 */
  memoryLimitMb?: number;
  /** Wall-clock limit; 0 means none. @default 400000 */
  workerTimeoutMs?: number;
  /** CPU time after which the worker retires. @default 1000 */
  cpuTimeSoftLimitMs?: number;
  /** CPU time after which the worker is killed. @default 2000 */
  cpuTimeHardLimitMs?: number;
  /** Always start a new worker. @default false */
  forceCreate?: boolean;
  /** Reload remote modules instead of using the module cache. @default false */
  noModuleCache?: boolean;
  /** Resolve `npm:` without package.json discovery. */
  noNpm?: boolean | null;
  /** Allow `https:` module downloads. @default true */
  allowRemoteModules?: boolean;
  /** Globs (relative to the runtime's working directory) of extra files the function may read. */
  staticPatterns?: string[];
  /** Network permissions, Supabase's shape. */
  permissions?: WorkerPermissions | null;
  /** Entry module as a `file:` URL (or path), instead of searching `servicePath`. */
  maybeEntrypoint?: string | null;
  /** Inline module source, used when there is no entry file. */
  maybeModuleCode?: string | null;
  /** Extra settings (`importMapPath`, `supervisor.requestAbsentTimeoutMs`, ...). */
  context?: {
    importMapPath?: string | null;
    [key: string]: unknown;
  } | null;
  [unknown: string]: unknown;
}

/** Options of `worker.fetch()`. */
export interface UserWorkerFetchOptions {
  signal?: AbortSignal;
}

/** The class exposed as `EdgeRuntime.userWorkers`. */
export interface UserWorkerClass {
  new (key: string): UserWorkerInstance;
  /**
   * Returns a worker for `options.servicePath`, reusing a live one unless `forceCreate`.
   *
   * @throws {TypeError} when the options are malformed
   * @throws {InvalidWorkerCreation} when the worker cannot boot or no slot frees in time
   */
  create(options: UserWorkerCreateOptions): Promise<UserWorkerInstance>;
  /** Ends every idle worker; resolves with how many. */
  tryCleanupIdleWorkers(timeoutMs?: number): Promise<number>;
  /** Per-worker process figures, by worker key. */
  memStats(): Record<string, WorkerStats>;
}

/** One worker's figures in `memStats()`, as last sampled. */
export interface WorkerStats {
  servicePath: string;
  pid: number;
  /** Resident memory now and at its highest. */
  rssBytes: number;
  peakRssBytes: number;
  /** CPU time used since the process started. */
  cpuMs: number;
}

/** A handle on one worker, as returned by `create()`. */
export interface UserWorkerInstance {
  /** The worker id (also its `SB_EXECUTION_ID`). */
  readonly key: string;
  /**
   * Sends `request` to the worker; streams both ways.
   *
   * @throws {InvalidWorkerResponse | WorkerRequestCancelled | WorkerAlreadyRetired} on failure
   */
  fetch(request: Request, options?: UserWorkerFetchOptions): Promise<Response>;
}

/** What the API needs from the rest of the runtime. */
export interface UserWorkersDeps {
  pool: WorkerPool;
  config: ResolvedConfig;
}

function assertType(ok: boolean, message: string): void {
  if (!ok) throw new TypeError(message);
}

function optionalNumber(options: UserWorkerCreateOptions, name: keyof UserWorkerCreateOptions) {
  const value = options[name];
  if (value === undefined || value === null) return undefined;
  assertType(
    typeof value === "number" && Number.isFinite(value) && value >= 0,
    `Option "${String(name)}" must be a non-negative number`,
  );
  return value as number;
}

function checkEnvVars(value: unknown): readonly (readonly [string, string])[] {
  if (value === undefined || value === null) return [];
  assertType(Array.isArray(value), 'Option "envVars" must be an array of [name, value] pairs');
  for (const pair of value as unknown[]) {
    assertType(
      Array.isArray(pair) && pair.length === 2 && typeof pair[0] === "string" &&
        typeof pair[1] === "string" && pair[0] !== "" && !/[=\0]/.test(pair[0]),
      'Option "envVars" must be an array of [name, value] string pairs',
    );
  }
  return value as [string, string][];
}

function checkStringList(value: unknown, name: string): string[] {
  if (value === undefined || value === null) return [];
  assertType(
    Array.isArray(value) && value.every((v) => typeof v === "string"),
    `Option "${name}" must be an array of strings`,
  );
  return value as string[];
}

/** Sibling folders named `_*` (e.g. `_shared`) that every function of the folder may read. */
async function sharedSiblings(servicePath: string): Promise<string[]> {
  const parent = dirname(servicePath);
  const out: string[] = [];
  try {
    for await (const entry of Deno.readDir(parent)) {
      if (entry.isDirectory && entry.name.startsWith("_")) out.push(join(parent, entry.name));
    }
  } catch {
    // An unreadable parent has no shared folders to offer.
  }
  return out;
}

function expandStatic(patterns: readonly string[], cwd: string): string[] {
  const files: string[] = [];
  for (const pattern of patterns) {
    for (const match of globSync(pattern, { cwd })) files.push(resolve(cwd, match));
  }
  return files;
}

/** Most entries a folder walk for symlinks looks at; entries beyond it are not checked. */
const SYMLINK_WALK_MAX_ENTRIES = 20_000;

/**
 * Finds a symlink under `root` that resolves outside `allowed` folders (Deno's read permission
 * follows symlinks, so such a link would hand the function a file it may not read).
 *
 * @returns the first offending link, relative to `root`, or `undefined`
 */
async function findEscapingSymlink(
  root: string,
  allowed: readonly string[],
): Promise<string | undefined> {
  const realAllowed = await Promise.all(allowed.map((dir) => Deno.realPath(dir).catch(() => dir)));
  const inside = (path: string) =>
    realAllowed.some((dir) => path === dir || path.startsWith(dir + "/"));
  const queue = [root];
  let seen = 0;
  while (queue.length > 0) {
    const dir = queue.pop()!;
    for await (const entry of Deno.readDir(dir)) {
      if (++seen > SYMLINK_WALK_MAX_ENTRIES) return undefined;
      const path = join(dir, entry.name);
      if (entry.isSymlink) {
        const target = await Deno.realPath(path).catch(() => undefined);
        if (target === undefined || !inside(target)) return path.slice(root.length + 1);
      } else if (entry.isDirectory) {
        queue.push(path);
      }
    }
  }
  return undefined;
}

async function locationFor(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key));
  const hex = [...new Uint8Array(digest).slice(0, 8)]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  return `http://fn-${hex}.localhost/`;
}

function entryPathFrom(value: string, cwd: string): string {
  if (value.startsWith("file:")) return fileURLToPath(value);
  return isAbsolute(value) ? value : resolve(cwd, value);
}

function bootFailed(message: string): RuntimeError {
  return new RuntimeError("BOOT_FAILED", `failed to bootstrap runtime: ${message}`);
}

/**
 * Validates `create()` options and resolves them into a pool spec.
 *
 * @throws {TypeError} when the options are malformed
 * @throws {RuntimeError} `BOOT_FAILED` when the service has no entry module
 */
async function resolveWorkerSpec(
  options: UserWorkerCreateOptions,
  config: ResolvedConfig,
): Promise<WorkerSpec> {
  assertType(typeof options === "object" && options !== null, "Options must be an object");
  const { cwd } = config;
  const rawServicePath = options.servicePath;
  const entrypointOption = options.maybeEntrypoint ?? undefined;
  const inlineCode = options.maybeModuleCode ?? undefined;
  assertType(
    rawServicePath === undefined || typeof rawServicePath === "string",
    'Option "servicePath" must be a string',
  );
  assertType(
    entrypointOption === undefined || typeof entrypointOption === "string",
    'Option "maybeEntrypoint" must be a string',
  );
  assertType(
    inlineCode === undefined || typeof inlineCode === "string",
    'Option "maybeModuleCode" must be a string',
  );
  if (!rawServicePath && !entrypointOption) throw new TypeError("service path must be defined");
  const servicePath = rawServicePath
    ? resolve(cwd, rawServicePath)
    : dirname(entryPathFrom(entrypointOption!, cwd));

  let entryPath: string | undefined;
  let entryUrl: string;
  if (entrypointOption) {
    entryPath = entryPathFrom(entrypointOption, cwd);
    entryUrl = pathToFileURL(entryPath).href;
  } else {
    entryPath = await findEntrypoint(servicePath);
    if (entryPath) {
      entryUrl = pathToFileURL(entryPath).href;
    } else if (inlineCode !== undefined) {
      const base64 = btoa(String.fromCharCode(...new TextEncoder().encode(inlineCode)));
      entryUrl = `data:application/typescript;base64,${base64}`;
    } else if (!(await isDirectory(servicePath))) {
      throw bootFailed(`service path "${rawServicePath}" is not a directory`);
    } else {
      throw bootFailed("could not find an appropriate entrypoint");
    }
  }

  const memoryLimitMb = optionalNumber(options, "memoryLimitMb") ??
    DEFAULT_WORKER_LIMITS.memoryLimitMb;
  assertType(memoryLimitMb >= 1, 'Option "memoryLimitMb" must be at least 1');
  const limits = {
    memoryLimitMb,
    workerTimeoutMs: optionalNumber(options, "workerTimeoutMs") ??
      DEFAULT_WORKER_LIMITS.workerTimeoutMs,
    cpuTimeSoftLimitMs: optionalNumber(options, "cpuTimeSoftLimitMs") ??
      DEFAULT_WORKER_LIMITS.cpuTimeSoftLimitMs,
    cpuTimeHardLimitMs: optionalNumber(options, "cpuTimeHardLimitMs") ??
      DEFAULT_WORKER_LIMITS.cpuTimeHardLimitMs,
  };
  const envVars = checkEnvVars(options.envVars);
  const staticFiles = expandStatic(
    [...config.staticPatterns, ...checkStringList(options.staticPatterns, "staticPatterns")],
    cwd,
  );
  const permissions = options.permissions ?? undefined;
  assertType(
    permissions === undefined || typeof permissions === "object",
    'Option "permissions" must be an object',
  );
  if (permissions) {
    checkStringList(permissions.allow_net, "permissions.allow_net");
    checkStringList(permissions.deny_net, "permissions.deny_net");
  }
  const context = options.context ?? {};
  assertType(typeof context === "object", 'Option "context" must be an object');
  const supervisor = context.supervisor ?? {};
  assertType(typeof supervisor === "object", 'Option "context.supervisor" must be an object');
  const absent = (supervisor as Record<string, unknown>).requestAbsentTimeoutMs ?? 0;
  assertType(
    typeof absent === "number" && Number.isFinite(absent) && absent >= 0,
    'Option "context.supervisor.requestAbsentTimeoutMs" must be a non-negative number',
  );
  const importMapOption = context.importMapPath ?? undefined;
  assertType(
    importMapOption === undefined || typeof importMapOption === "string",
    'Option "context.importMapPath" must be a string',
  );
  const importMapPath = importMapOption === undefined || importMapOption.startsWith("data:")
    ? importMapOption
    : resolve(cwd, importMapOption);

  const serviceIsDir = await isDirectory(servicePath);
  const shared = serviceIsDir ? await sharedSiblings(servicePath) : [];
  for (const root of serviceIsDir ? [servicePath, ...shared] : []) {
    const link = await findEscapingSymlink(root, [servicePath, ...shared]);
    if (link !== undefined) {
      throw bootFailed(`symlink "${link}" in "${basename(root)}" points outside the function`);
    }
  }
  const readPaths = [
    servicePath,
    ...(entryPath ? [dirname(entryPath)] : []),
    ...shared,
    ...staticFiles,
    ...(importMapPath && !importMapPath.startsWith("data:") ? [importMapPath] : []),
    config.denoDir,
  ];
  const configPath = serviceIsDir ? await findDenoConfig(servicePath) : undefined;
  return {
    key: servicePath,
    functionName: basename(servicePath),
    cwd: serviceIsDir ? servicePath : cwd,
    entryUrl,
    forceCreate: options.forceCreate === true,
    limits,
    requestAbsentTimeoutMs: absent as number,
    launch: {
      readPaths,
      envVars,
      memoryLimitMb,
      location: await locationFor(servicePath),
      configPath,
      importMapPath,
      noModuleCache: options.noModuleCache === true,
      noNpm: options.noNpm === true,
      allowRemoteModules: options.allowRemoteModules !== false,
      permissions,
      inspect: config.inspect,
    },
  };
}

/**
 * Builds the `EdgeRuntime.userWorkers` class bound to one runtime's pool.
 */
export function createUserWorkersClass(deps: UserWorkersDeps): UserWorkerClass {
  const { pool, config } = deps;
  // servicePath as given → pool key; main services pass the same few strings again and again.
  const keyCache = new Map<string, string>();
  const poolKey = (servicePath: string): string => {
    let key = keyCache.get(servicePath);
    if (key === undefined) {
      if (keyCache.size >= 1024) keyCache.clear();
      key = resolve(config.cwd, servicePath);
      keyCache.set(servicePath, key);
    }
    return key;
  };

  class UserWorker implements UserWorkerInstance {
    readonly key: string;

    constructor(key: string) {
      assertType(typeof key === "string", "Worker key must be a string");
      this.key = key;
    }

    static async create(options: UserWorkerCreateOptions): Promise<UserWorker> {
      // Hot path: a warm worker for this servicePath needs none of the resolution below.
      if (
        typeof options === "object" && options !== null &&
        typeof options.servicePath === "string" &&
        options.forceCreate !== true
      ) {
        const warm = pool.tryAcquireWarm(poolKey(options.servicePath));
        if (warm) return new UserWorker(warm.id);
      }
      const spec = await resolveWorkerSpec(options, config).catch((error) => {
        throw toWorkerApiError(error);
      });
      let worker: PooledWorker;
      try {
        worker = await pool.acquire(spec);
      } catch (error) {
        throw toWorkerApiError(error);
      }
      return new UserWorker(worker.id);
    }

    static tryCleanupIdleWorkers(_timeoutMs?: number): Promise<number> {
      return Promise.resolve(pool.cleanupIdle());
    }

    static memStats(): Record<string, WorkerStats> {
      const out: Record<string, WorkerStats> = {};
      for (const worker of pool.workers) {
        const { rssBytes, peakRssBytes, cpuMs } = worker.usage;
        out[worker.id] = {
          servicePath: worker.key,
          pid: worker.process.pid,
          rssBytes,
          peakRssBytes,
          cpuMs,
        };
      }
      return out;
    }

    async fetch(request: Request, options: UserWorkerFetchOptions = {}): Promise<Response> {
      assertType(request instanceof Request, "worker.fetch() needs a Request");
      const worker = pool.get(this.key);
      if (options.signal?.aborted) {
        worker?.releaseLease();
        options.signal.throwIfAborted();
      }
      if (!worker) {
        throw toWorkerApiError(new RuntimeError("WORKER_CRASHED", "user worker not available"));
      }
      let outgoing = request;
      let signal = options.signal;
      if (request.bodyUsed) {
        // Supabase sends no body for a request whose body was already read.
        outgoing = new Request(request.url, { method: request.method, headers: request.headers });
        signal = signal ? AbortSignal.any([signal, request.signal]) : request.signal;
      }
      try {
        return await worker.fetch(outgoing, signal);
      } catch (error) {
        throw toWorkerApiError(error);
      }
    }
  }

  return UserWorker;
}
