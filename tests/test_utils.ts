/**
 * Test helpers: run the real runtime as a child process (`withRuntime`), find fixtures, and check
 * the process table for leftover workers.
 */

import { fileURLToPath } from "node:url";

/** Absolute path of the project root. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** Absolute path of `tests/fixtures/functions/<name>`. */
export function fixture(name: string): string {
  return `${ROOT}tests/fixtures/functions/${name}`;
}

/** Absolute path of `tests/fixtures/main/<name>`. */
export function fixtureMain(name: string): string {
  return `${ROOT}tests/fixtures/main/${name}`;
}

/** Absolute path of the folder holding every function fixture. */
export const FUNCTION_FIXTURES = `${ROOT}tests/fixtures/functions`;

/** A running runtime child process. */
export interface RuntimeHandle {
  /** Base URL, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** The runtime's process id. */
  pid: number;
  /** Everything the runtime wrote to stderr so far. */
  stderr(): string;
  /** Ids of the runtime's live child processes (its workers). */
  childPids(): Promise<number[]>;
  /** Sends a signal to the runtime. */
  kill(signal: Deno.Signal): void;
  /** Resolves with the exit status once the runtime ends. */
  status: Promise<Deno.CommandStatus>;
}

/** Options of {@linkcode withRuntime}. */
export interface WithRuntimeOptions {
  /** Extra `main.ts start` arguments. */
  args?: string[];
  /** Extra environment for the runtime. */
  env?: Record<string, string>;
  /** Working directory. @default the project root */
  cwd?: string;
}

/** Live processes as pid → parent pid, from `ps` (Deno reads /proc only with --allow-all). */
async function processTable(): Promise<Map<number, number>> {
  const { stdout } = await new Deno.Command("ps", {
    args: ["-A", "-o", "pid=,ppid=,stat="],
    stdout: "piped",
    stderr: "null",
  }).output();
  const table = new Map<number, number>();
  for (const line of new TextDecoder().decode(stdout).split("\n")) {
    const [pid, ppid, stat] = line.trim().split(/\s+/);
    if (!pid || stat?.startsWith("Z")) continue;
    table.set(Number(pid), Number(ppid));
  }
  return table;
}

/** Ids of the live children of `pid`. */
export async function childPidsOf(pid: number): Promise<number[]> {
  const out: number[] = [];
  for (const [child, parent] of await processTable()) if (parent === pid) out.push(child);
  return out;
}

/** True while `pid` is a live (non-zombie) process. */
export async function isAlive(pid: number): Promise<boolean> {
  return (await processTable()).has(pid);
}

/** Polls `check` every 10 ms until it is true or `timeoutMs` passes. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = "condition",
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The `deno run` arguments that start the runtime (as the `start` task does). */
export function runtimeCommandArgs(args: string[]): string[] {
  return [
    "run",
    "--allow-all",
    "--unstable-no-legacy-abort",
    `${ROOT}main.ts`,
    "start",
    "--port=0",
    "--ip=127.0.0.1",
    ...args,
  ];
}

/**
 * Starts the runtime as a child, waits for its listening line, runs `body`, then stops it with
 * SIGINT, drains both pipes, awaits its status and checks that none of its workers survived.
 * Prints the runtime's stderr only when `body` failed.
 */
export async function withRuntime(
  options: WithRuntimeOptions,
  body: (runtime: RuntimeHandle) => Promise<void>,
): Promise<void> {
  const child = new Deno.Command(Deno.execPath(), {
    args: runtimeCommandArgs(options.args ?? []),
    cwd: options.cwd ?? ROOT,
    env: options.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let stderrText = "";
  const stderrDone = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      stderrText += chunk;
    }
  })();
  let stdoutText = "";
  let resolveUrl!: (url: string) => void;
  const urlFound = new Promise<string>((resolve) => resolveUrl = resolve);
  const stdoutDone = (async () => {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      stdoutText += chunk;
      const match = /Listening on (http:\/\/[^/\s]+)\//.exec(stdoutText);
      if (match) resolveUrl(match[1]);
    }
  })();
  let failed = true;
  const seenWorkers = new Set<number>();
  const handle: RuntimeHandle = {
    url: "",
    pid: child.pid,
    stderr: () => stderrText,
    childPids: async () => {
      const pids = await childPidsOf(child.pid);
      for (const pid of pids) seenWorkers.add(pid);
      return pids;
    },
    kill: (signal) => child.kill(signal),
    status: child.status,
  };
  try {
    const url = await Promise.race([
      urlFound,
      child.status.then((s) => {
        throw new Error(`Runtime exited with code ${s.code} before listening:\n${stderrText}`);
      }),
    ]);
    handle.url = url;
    await body(handle);
    await handle.childPids();
    failed = false;
  } finally {
    try {
      child.kill("SIGINT");
    } catch {
      // It already exited (the body may have stopped it on purpose).
    }
    await child.status;
    await Promise.all([stderrDone, stdoutDone]);
    if (failed) {
      // deno-lint-ignore no-console
      console.error(`--- runtime stderr ---\n${stderrText}\n--- end ---`);
    }
  }
  for (const pid of seenWorkers) {
    await waitFor(async () => !(await isAlive(pid)), 3000, `worker ${pid} to end`);
  }
}

/** Reads a response body fully and returns it with the status (so no body is left open). */
export async function fetchText(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: string; headers: Headers }> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.text(), headers: response.headers };
}
