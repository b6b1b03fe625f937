/**
 * Load generators: `wrk` when it is installed, else a built-in one (N keep-alive fetch loops in
 * this process). Both return the same {@linkcode LoadResult}.
 */

import type { BenchScope } from "./_process.ts";

/** Which load generator ran. */
export type Generator = "wrk" | "builtin";

/** What a load run needs. */
export interface LoadOptions {
  url: string;
  connections: number;
  durationSec: number;
}

/** The figures of one load run. */
export interface LoadResult {
  connections: number;
  durationSec: number;
  /** Completed requests. */
  requests: number;
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses with status 400 or above (wrk's "Non-2xx or 3xx responses"). */
  non2xx: number;
  /** Connect, read, write and timeout errors. */
  errors: number;
}

/** Per-request timeout of both generators. */
const REQUEST_TIMEOUT_SEC = 5;
/** How much longer than its duration wrk may run before it is killed. */
const WRK_SLACK_MS = 15_000;

/** True when `wrk` runs. */
export async function hasWrk(): Promise<boolean> {
  try {
    // `wrk --version` exits 1 after its banner; only a spawn failure means it is missing.
    await new Deno.Command("wrk", {
      args: ["--version"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).output();
    return true;
  } catch {
    return false;
  }
}

const TIME_UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function wrkTimeMs(text: string, label: string): number {
  const match = new RegExp(`^\\s*${label}\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, "m").exec(text);
  if (!match) throw new SyntaxError(`Cannot find "${label}" in the wrk output:\n${text}`);
  return Number(match[1]) * TIME_UNIT_MS[match[2]];
}

/**
 * Reads the figures out of `wrk --latency` output.
 *
 * @throws {SyntaxError} when a required line is missing
 */
export function parseWrkOutput(text: string, options: LoadOptions): LoadResult {
  const rate = /^Requests\/sec:\s+([\d.]+)/m.exec(text);
  const total = /^\s*(\d+) requests in /m.exec(text);
  if (!rate || !total) {
    throw new SyntaxError(`Cannot find the request rate in the wrk output:\n${text}`);
  }
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    connections: options.connections,
    durationSec: options.durationSec,
    requests: Number(total[1]),
    requestsPerSec: Number(rate[1]),
    p50Ms: wrkTimeMs(text, "50%"),
    p99Ms: wrkTimeMs(text, "99%"),
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
  };
}

/** Runs `wrk -t1 -c<N> -d<secs>s --latency` as a child of `scope`. */
export async function runWrk(scope: BenchScope, options: LoadOptions): Promise<LoadResult> {
  const child = scope.spawn({
    label: "wrk",
    command: "wrk",
    args: [
      "-t1",
      `-c${options.connections}`,
      `-d${options.durationSec}s`,
      `--timeout=${REQUEST_TIMEOUT_SEC}s`,
      "--latency",
      options.url,
    ],
  });
  try {
    const status = await child.finished(options.durationSec * 1000 + WRK_SLACK_MS);
    if (!status.success) {
      throw new Error(`wrk exited with code ${status.code}:\n${child.stderrTail()}`);
    }
    return parseWrkOutput(child.stdout, options);
  } finally {
    await scope.release(child);
  }
}

/** The `p`th percentile (nearest rank) of ascending `sorted`. */
function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

/**
 * Runs `connections` fetch loops against `url` for `durationSec`, each reusing its keep-alive
 * connection, and times every request (headers and body) with `performance.now()`.
 */
export async function runBuiltin(options: LoadOptions): Promise<LoadResult> {
  // A private client, so its keep-alive connections are closed when the run ends and never hold
  // a server's graceful shutdown open.
  const client = Deno.createHttpClient({});
  const latencies: number[] = [];
  let non2xx = 0;
  let errors = 0;
  const start = performance.now();
  const end = start + options.durationSec * 1000;
  // One abort for the whole run bounds it even if a server stops answering.
  const abort = new AbortController();
  const watchdog = setTimeout(
    () => abort.abort(),
    options.durationSec * 1000 + REQUEST_TIMEOUT_SEC * 1000,
  );
  const loop = async () => {
    while (performance.now() < end && !abort.signal.aborted) {
      const sent = performance.now();
      try {
        const response = await fetch(options.url, { client, signal: abort.signal });
        await response.arrayBuffer();
        latencies.push(performance.now() - sent);
        if (response.status >= 400) non2xx++;
      } catch {
        errors++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.connections }, loop));
  } finally {
    clearTimeout(watchdog);
    client.close();
  }
  const elapsedSec = (performance.now() - start) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  return {
    connections: options.connections,
    durationSec: options.durationSec,
    requests: sorted.length,
    requestsPerSec: sorted.length / elapsedSec,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    non2xx,
    errors,
  };
}
