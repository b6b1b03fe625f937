/**
 * Per-function settings of the built-in main service, as `supabase functions serve` reads them:
 * `supabase/config.toml` `[functions.<name>]`, then `<functions>/<name>/config.json` on top.
 */

import { dirname, isAbsolute, join, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import type { WorkerLimitValues } from "../config.ts";
import { ConfigError } from "../errors.ts";

/** One function's settings, resolved to absolute paths. */
export interface FunctionSettings {
  /** Require a valid JWT (when a JWT secret or key set is configured). */
  verifyJwt: boolean | undefined;
  /** Entry module, when not the folder's `index.ts`. */
  entrypoint: string | undefined;
  /** Import map file for the worker (`context.importMapPath`). */
  importMap: string | undefined;
  /** Globs of static files the function may read. */
  staticFiles: string[];
  /** Limits that replace the runtime's for this function. */
  limits: Partial<WorkerLimitValues>;
  /** Hosts the function may reach (lifts the default loopback and metadata denials). */
  allowNet?: string[];
}

/** Settings by function name; names without settings are absent. */
export type FunctionSettingsTable = ReadonlyMap<string, FunctionSettings>;

interface RawSettings {
  verify_jwt?: unknown;
  entrypoint?: unknown;
  import_map?: unknown;
  static_files?: unknown;
  [limitKey: string]: unknown;
}

/** Settings keys for limits, and the `create()` option each sets. */
const LIMIT_KEYS = {
  memory_limit_mb: "memoryLimitMb",
  worker_timeout_ms: "workerTimeoutMs",
  cpu_time_soft_limit_ms: "cpuTimeSoftLimitMs",
  cpu_time_hard_limit_ms: "cpuTimeHardLimitMs",
} as const;

function readRaw(raw: RawSettings, base: string, source: string): Partial<FunctionSettings> {
  const out: Partial<FunctionSettings> = {};
  const fail = (key: string, expected: string) => {
    throw new ConfigError(`Invalid "${key}" in ${source}: expected ${expected}`);
  };
  const path = (value: string) => isAbsolute(value) ? value : resolve(base, value);
  if (raw.verify_jwt !== undefined) {
    if (typeof raw.verify_jwt !== "boolean") fail("verify_jwt", "true or false");
    out.verifyJwt = raw.verify_jwt as boolean;
  }
  if (raw.entrypoint !== undefined) {
    if (typeof raw.entrypoint !== "string") fail("entrypoint", "a path");
    out.entrypoint = path(raw.entrypoint as string);
  }
  if (raw.import_map !== undefined) {
    if (typeof raw.import_map !== "string") fail("import_map", "a path");
    out.importMap = path(raw.import_map as string);
  }
  if (raw.static_files !== undefined) {
    const files = raw.static_files;
    if (!Array.isArray(files) || !files.every((f) => typeof f === "string")) {
      fail("static_files", "a list of globs");
    }
    out.staticFiles = (files as string[]).map(path);
  }
  if (raw.allow_net !== undefined) {
    const hosts = raw.allow_net;
    if (!Array.isArray(hosts) || !hosts.every((h) => typeof h === "string" && h !== "")) {
      fail("allow_net", "a list of hosts");
    }
    out.allowNet = hosts as string[];
  }
  for (const [key, option] of Object.entries(LIMIT_KEYS)) {
    const value = raw[key];
    if (value === undefined) continue;
    if (!Number.isSafeInteger(value) || (value as number) < (key === "memory_limit_mb" ? 1 : 0)) {
      fail(key, key === "memory_limit_mb" ? "a whole number of at least 1" : "a whole number");
    }
    out.limits = { ...out.limits, [option]: value as number };
  }
  return out;
}

async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  }
}

/**
 * Reads the settings of every function in `functionsPath`.
 *
 * `config.toml` is looked for in the parent of the functions folder (the `supabase/` folder of a
 * Supabase project); its paths are relative to that folder, as the Supabase CLI reads them
 * ("paths in configs are specified relative to config.toml"). A `config.json` path is relative to
 * its function folder.
 *
 * @throws {ConfigError} when a file is malformed
 */
export async function loadFunctionSettings(functionsPath: string): Promise<FunctionSettingsTable> {
  const merged = new Map<string, Partial<FunctionSettings>>();
  const tomlPath = join(dirname(functionsPath), "config.toml");
  const tomlText = await readTextIfExists(tomlPath);
  if (tomlText !== undefined) {
    let toml: Record<string, unknown>;
    try {
      toml = parseToml(tomlText) as Record<string, unknown>;
    } catch (error) {
      throw new ConfigError(`Cannot parse "${tomlPath}": ${(error as Error).message}`);
    }
    const functions = toml.functions ?? {};
    if (typeof functions !== "object" || Array.isArray(functions)) {
      throw new ConfigError(`Invalid [functions] in "${tomlPath}": expected a table`);
    }
    for (const [name, raw] of Object.entries(functions as Record<string, unknown>)) {
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw new ConfigError(`Invalid [functions.${name}] in "${tomlPath}": expected a table`);
      }
      merged.set(
        name,
        readRaw(raw as RawSettings, dirname(tomlPath), `${tomlPath} [functions.${name}]`),
      );
    }
  }
  let entries: Deno.DirEntry[] = [];
  try {
    entries = await Array.fromAsync(Deno.readDir(functionsPath));
  } catch {
    // A missing functions folder serves nothing; requests get 404.
  }
  for (const entry of entries) {
    if (!entry.isDirectory) continue;
    const jsonPath = join(functionsPath, entry.name, "config.json");
    const text = await readTextIfExists(jsonPath);
    if (text === undefined) continue;
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (error) {
      throw new ConfigError(`Cannot parse "${jsonPath}": ${(error as Error).message}`);
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      throw new ConfigError(`Invalid "${jsonPath}": expected a JSON object`);
    }
    const fromJson = readRaw(raw as RawSettings, join(functionsPath, entry.name), jsonPath);
    const previous = merged.get(entry.name);
    merged.set(entry.name, {
      ...previous,
      ...fromJson,
      limits: { ...previous?.limits, ...fromJson.limits },
    });
  }
  const table = new Map<string, FunctionSettings>();
  for (const [name, partial] of merged) {
    table.set(name, {
      verifyJwt: partial.verifyJwt,
      entrypoint: partial.entrypoint,
      importMap: partial.importMap,
      staticFiles: partial.staticFiles ?? [],
      limits: partial.limits ?? {},
      ...(partial.allowNet ? { allowNet: partial.allowNet } : {}),
    });
  }
  return table;
}
