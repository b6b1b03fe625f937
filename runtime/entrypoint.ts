/**
 * Finds the module to run in a service directory, as Supabase does: `index.ts`, `index.tsx`,
 * `index.js`, `index.mjs`, `index.jsx`, else `package.json`'s `main`.
 */

import { join, resolve } from "node:path";

/** Entry file names tried in order. */
const ENTRY_NAMES = ["index.ts", "index.tsx", "index.js", "index.mjs", "index.jsx"] as const;

/** Config files a function may carry, tried in order. */
const CONFIG_NAMES = ["deno.json", "deno.jsonc"] as const;

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** True when `path` is a directory (false when it is missing or anything else). */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** {@linkcode isDirectory}, synchronously, for code paths that cannot await. */
export function isDirectorySync(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

/**
 * Resolves the entry module of `dir`.
 *
 * @returns the absolute entry path, or `undefined` when the directory has none
 */
export async function findEntrypoint(dir: string): Promise<string | undefined> {
  for (const name of ENTRY_NAMES) {
    const path = join(dir, name);
    if (await isFile(path)) return path;
  }
  const manifestPath = join(dir, "package.json");
  if (!(await isFile(manifestPath))) return undefined;
  try {
    const manifest = JSON.parse(await Deno.readTextFile(manifestPath));
    if (typeof manifest.main === "string") {
      const main = resolve(dir, manifest.main);
      if (await isFile(main)) return main;
    }
  } catch {
    // A package.json that is not JSON has no usable `main`.
  }
  return undefined;
}

/** Returns the function's own deno.json / deno.jsonc path, if it has one. */
export async function findDenoConfig(dir: string): Promise<string | undefined> {
  for (const name of CONFIG_NAMES) {
    const path = join(dir, name);
    if (await isFile(path)) return path;
  }
  return undefined;
}
