/**
 * `--watch`: when files under a watched folder change, the workers whose service folder holds them
 * retire (requests in flight finish on the old worker; new ones boot a fresh one). A change in a
 * shared `_*` folder retires every worker of that functions folder. The runtime also uses
 * {@linkcode watchTree} to reload a custom main service.
 */

import { dirname, sep } from "node:path";
import type { Logger } from "./log.ts";
import type { WorkerPool } from "./worker_pool.ts";

/** Changes closer together than this are handled as one. */
const DEBOUNCE_MS = 50;

/** Folders never worth a restart. */
const IGNORED = [`${sep}node_modules${sep}`, `${sep}.git${sep}`];

/** A running watch; close it at shutdown. */
export interface FunctionWatcher {
  close(): void;
}

/** Which live service folders a changed file affects. */
export function affectedServices(changed: string, servicePaths: Iterable<string>): string[] {
  const out: string[] = [];
  for (const servicePath of servicePaths) {
    if (changed.startsWith(servicePath + sep)) {
      out.push(servicePath);
      continue;
    }
    // A file in a `_shared`-style sibling folder is code every function of the folder may use.
    const parent = dirname(servicePath);
    const rest = changed.startsWith(parent + sep) ? changed.slice(parent.length + 1) : undefined;
    if (rest !== undefined && rest.startsWith("_")) out.push(servicePath);
  }
  return out;
}

/**
 * Watches `roots` recursively and calls `onChange` with the paths changed, at most once per
 * {@linkcode DEBOUNCE_MS}.
 *
 * @throws {Deno.errors.NotFound} when a root does not exist
 */
export function watchTree(
  roots: readonly string[],
  onChange: (paths: string[]) => void,
  logger: Logger,
): FunctionWatcher {
  const watcher = Deno.watchFs([...roots], { recursive: true });
  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const flush = () => {
    timer = undefined;
    const changed = [...pending];
    pending.clear();
    onChange(changed);
  };
  (async () => {
    try {
      for await (const event of watcher) {
        for (const path of event.paths) {
          if (IGNORED.some((part) => path.includes(part))) continue;
          pending.add(path);
        }
        if (pending.size > 0 && timer === undefined) timer = setTimeout(flush, DEBOUNCE_MS);
      }
    } catch (error) {
      logger.warn(`[watch] stopped: ${(error as Error).message}`);
    }
  })();
  return {
    close() {
      clearTimeout(timer);
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    },
  };
}

/**
 * Watches `roots` and retires the affected workers of `pool`.
 */
export function watchFunctions(
  roots: readonly string[],
  pool: WorkerPool,
  logger: Logger,
): FunctionWatcher {
  return watchTree(roots, (changed) => {
    const live = new Set(pool.workers.map((w) => w.key));
    const affected = new Set(changed.flatMap((path) => affectedServices(path, live)));
    for (const worker of pool.workers) {
      if (!affected.has(worker.key)) continue;
      logger.info(`[watch] "${worker.functionName}" changed: restarting its worker`);
      pool.retire(worker);
    }
  }, logger);
}
