/**
 * Benchmark of the runtime against a bare `Deno.serve` of the same handler
 * (`bench/fixtures/hello`): throughput and latency at N connections and at 1, then cold start
 * (spawn to first 200) of a never-started function against a fresh `deno run` of the handler,
 * then kill/restart cycles (a worker started and killed at its CPU limit, again and again) with
 * the main process's resident memory before and after.
 *
 * Run: `deno task bench [--duration=5] [--connections=50] [--cycles=200] [--quick] [--json]`.
 */

import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  type Generator,
  hasWrk,
  type LoadOptions,
  type LoadResult,
  runBuiltin,
  runWrk,
} from "./_load.ts";
import { BENCH_DIR, ROOT } from "./_paths.ts";
import {
  type BenchChild,
  BenchScope,
  type ChildProcessInfo,
  childrenOf,
  delay,
  residentMemoryBytes,
} from "./_process.ts";

const USAGE = `Usage: deno task bench [options]

Compares the runtime (function "hello" behind the default main service) with a bare Deno.serve
of the same handler: req/s, p50 and p99 latency, and cold start. Then runs kill/restart cycles
(each request boots a worker that the CPU limit kills) and reports the runtime's memory growth.

Options:
      --duration=<SECONDS>      length of each load run (default 5)
      --connections=<N>         concurrent connections of the main load run (default 50)
      --rounds=<N>              cold-start rounds per target (default 10)
      --cycles=<N>              kill/restart cycles after a warm-up of 10 (default 200)
      --generator=<NAME>        auto, wrk or builtin (default auto: wrk when it is on PATH)
      --quick                   smoke test: 1 s runs, 3 cold-start rounds, 30 cycles
      --json                    print one JSON object on stdout (the table goes to stderr)
  -h, --help                    show this help`;

/** The handler both targets serve. */
const HELLO_MODULE = `${BENCH_DIR}fixtures/hello/index.ts`;
const HELLO_BODY = "Hello, world!\n";
const LISTENING_LINE = /Listening on (http:\/\/[^/\s]+)\//;
/** How long a server may take to print its listening line (a first run may fetch npm:hono). */
const READY_TIMEOUT_MS = 60_000;
/** How long one cold-start request may take. */
const COLD_REQUEST_TIMEOUT_MS = 30_000;
const WARMUP_SEC = 1;
/**
 * Main service of the kill/restart cycles: each request force-creates a `busy-loop` worker with
 * tiny CPU limits and answers with the error its fetch ended in.
 */
const CYCLES_MAIN_SERVICE = `${BENCH_DIR}fixtures/main-cycles`;
/** The answer of a cycle whose worker the supervisor killed, as the main service prints it. */
const CYCLE_ERROR_PREFIX = "WorkerRequestCancelled:";
/** Untimed cycles before the first memory reading: caches, JIT and pools settle in them. */
const WARMUP_CYCLES = 10;
/** How long one cycle (boot, loop, kill) may take. */
const CYCLE_TIMEOUT_MS = 30_000;
/** How long killed workers get to disappear from the runtime's children. */
const WORKER_EXIT_WAIT_MS = 2000;
const MIB = 1024 * 1024;

/** The benchmark's settings, resolved from the flags. */
export interface BenchOptions {
  durationSec: number;
  connections: number;
  coldRounds: number;
  /** Kill/restart cycles measured after {@linkcode WARMUP_CYCLES} untimed ones. */
  cycles: number;
  warmupSec: number;
  generator: "auto" | Generator;
  isQuick: boolean;
  isJson: boolean;
}

/** Both targets under the same load. */
export interface LoadComparison {
  bare: LoadResult;
  runtime: LoadResult;
}

/** What the kill/restart cycles measured. */
export interface KillRestartReport {
  cycles: number;
  warmupCycles: number;
  /** Resident memory of the runtime process after the warm-up and after the cycles. */
  rssBeforeMiB: number;
  rssAfterMiB: number;
  growthMiB: number;
  /** Request to error answer of one cycle: boot, CPU-time kill, exit. */
  cycleMedianMs: number;
  cycleMaxMs: number;
  /** Cycles that did not end in `WorkerRequestCancelled`, by status and body. */
  unexpectedAnswers: Record<string, number>;
  /** Processes still under the runtime after the cycles (zombies included); 0 when none leaked. */
  workersLeft: number;
}

/** Everything one benchmark run measured. */
export interface BenchReport {
  machine: {
    cores: number;
    cpuModel: string;
    deno: string;
    generator: Generator;
    /** 1-minute load average when the benchmark started: other work on the machine skews it. */
    loadAverageAtStart: number | null;
  };
  options: Omit<BenchOptions, "isJson" | "generator">;
  throughput: LoadComparison & { ratio: number };
  singleConnection: LoadComparison & { addedP50Ms: number };
  coldStart: {
    runtimeMs: number[];
    bareMs: number[];
    runtimeMedianMs: number;
    bareMedianMs: number;
    ratio: number;
  };
  /** Workers the runtime had for `hello` after the load runs (from `/_internal/metric`). */
  runtimeWorkersAfterLoad: number | null;
  killRestart: KillRestartReport;
}

function positiveInteger(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new TypeError(`Cannot use --${flag}="${value}": expected a positive integer`);
  }
  return n;
}

/**
 * Resolves the flags.
 *
 * @returns the options, or `undefined` when `--help` was given
 * @throws {TypeError} on an unknown flag or a bad value
 */
export function parseBenchArgs(argv: string[]): BenchOptions | undefined {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      duration: { type: "string" },
      connections: { type: "string", default: "50" },
      rounds: { type: "string" },
      cycles: { type: "string" },
      generator: { type: "string", default: "auto" },
      quick: { type: "boolean", default: false },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help) return undefined;
  const generator = values.generator;
  if (generator !== "auto" && generator !== "wrk" && generator !== "builtin") {
    throw new TypeError(`Cannot use --generator="${generator}": expected auto, wrk or builtin`);
  }
  const isQuick = values.quick;
  return {
    durationSec: positiveInteger(values.duration ?? (isQuick ? "1" : "5"), "duration"),
    connections: positiveInteger(values.connections, "connections"),
    coldRounds: positiveInteger(values.rounds ?? (isQuick ? "3" : "10"), "rounds"),
    cycles: positiveInteger(values.cycles ?? (isQuick ? "30" : "200"), "cycles"),
    warmupSec: WARMUP_SEC,
    generator,
    isQuick,
    isJson: values.json,
  };
}

const encoder = new TextEncoder();

function writeLine(file: typeof Deno.stdout | typeof Deno.stderr, line: string): void {
  const bytes = encoder.encode(`${line}\n`);
  let written = 0;
  while (written < bytes.length) written += file.writeSync(bytes.subarray(written));
}

function progress(line: string): void {
  writeLine(Deno.stderr, `bench: ${line}`);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function loadAverage(): Promise<number | null> {
  try {
    return Number((await Deno.readTextFile("/proc/loadavg")).split(" ")[0]);
  } catch {
    return null;
  }
}

async function cpuModel(): Promise<string> {
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    return /^model name\s*:\s*(.+)$/m.exec(info)?.[1].trim() ?? Deno.build.arch;
  } catch {
    return Deno.build.arch;
  }
}

/** GETs `url` and reads the whole body. */
async function fetchText(
  client: Deno.HttpClient,
  url: string,
  timeoutMs: number,
): Promise<{ status: number; body: string }> {
  const response = await fetch(url, { client, signal: AbortSignal.timeout(timeoutMs) });
  return { status: response.status, body: await response.text() };
}

/** Fails unless `url` answers 200 with the hello body; the error carries the server's stderr. */
async function expectHello(
  client: Deno.HttpClient,
  url: string,
  server: BenchChild,
): Promise<void> {
  const { status, body } = await fetchText(client, url, COLD_REQUEST_TIMEOUT_MS);
  if (status !== 200 || body !== HELLO_BODY) {
    const stderr = server.stderrTail();
    throw new Error(
      `${server.label} answered ${status} ${JSON.stringify(body.slice(0, 200))} for "${url}"` +
        (stderr ? `; its stderr ends with:\n${stderr}` : ""),
    );
  }
}

/** `deno run` arguments of the bare server for `handlerPath`, as tight as a runtime worker's. */
function bareServerArgs(handlerPath: string): string[] {
  return [
    "run",
    "--no-prompt",
    "--no-lock",
    "--no-config",
    "--allow-net=127.0.0.1",
    `--allow-read=${join(handlerPath, "..")}`,
    `${BENCH_DIR}bare_server.ts`,
    handlerPath,
  ];
}

/**
 * `deno run` arguments of the runtime (the `start` task, quiet), serving `--functions=<dir>` or
 * `--main-service=<dir>` as `serviceFlag` says.
 */
function runtimeArgs(serviceFlag: string): string[] {
  return [
    "run",
    "--allow-all",
    "--unstable-no-legacy-abort",
    `${ROOT}main.ts`,
    "start",
    "--port=0",
    "--ip=127.0.0.1",
    serviceFlag,
    "--graceful-exit-timeout=1",
    "-q",
  ];
}

/** Spawns a server in `scope` and waits for its listening line. */
async function startServer(
  scope: BenchScope,
  label: string,
  args: string[],
): Promise<{ child: BenchChild; origin: string }> {
  const child = scope.spawn({ label, command: Deno.execPath(), args, cwd: ROOT });
  const match = await child.waitForStdout(LISTENING_LINE, READY_TIMEOUT_MS);
  return { child, origin: match[1] };
}

/** Runs the chosen load generator once. */
function runLoad(scope: BenchScope, generator: Generator, options: LoadOptions) {
  return generator === "wrk" ? runWrk(scope, options) : runBuiltin(options);
}

/** Warms `url` up, then loads it at N connections and at 1. */
async function measureTarget(
  scope: BenchScope,
  generator: Generator,
  options: BenchOptions & { url: string; label: string },
): Promise<{ loaded: LoadResult; single: LoadResult }> {
  const { url, label, durationSec } = options;
  progress(`${label}: warm-up ${options.warmupSec} s`);
  await runLoad(scope, generator, {
    url,
    connections: options.connections,
    durationSec: options.warmupSec,
  });
  progress(`${label}: ${options.connections} connections, ${durationSec} s`);
  const loaded = await runLoad(scope, generator, {
    url,
    connections: options.connections,
    durationSec,
  });
  progress(`${label}: 1 connection, ${durationSec} s`);
  const single = await runLoad(scope, generator, { url, connections: 1, durationSec });
  return { loaded, single };
}

/** Number of user workers the runtime reports, or null when the endpoint does not answer. */
async function runtimeWorkerCount(client: Deno.HttpClient, origin: string): Promise<number | null> {
  try {
    const { status, body } = await fetchText(client, `${origin}/_internal/metric`, 2000);
    const count = status === 200 ? JSON.parse(body).activeUserWorkersCount : undefined;
    return typeof count === "number" ? count : null;
  } catch {
    return null;
  }
}

/** Measures spawn → first 200 of `rounds` never-started functions and as many bare processes. */
async function measureColdStart(
  scope: BenchScope,
  client: Deno.HttpClient,
  rounds: number,
): Promise<{ runtimeMs: number[]; bareMs: number[] }> {
  // 1. One copy of the handler per round and target, under distinct paths: every first request
  //    loads a module never seen before, on both sides alike. Round "warmup" is not timed; it
  //    brings bootstrap.ts and bare_server.ts into Deno's cache.
  const functionsDir = await scope.makeTempDir("edge-bench-functions-");
  const bareDir = await scope.makeTempDir("edge-bench-bare-");
  const names = ["warmup", ...Array.from({ length: rounds }, (_, i) => String(i))];
  for (const name of names) {
    for (const dir of [join(functionsDir, `cold-${name}`), join(bareDir, `cold-${name}`)]) {
      await Deno.mkdir(dir);
      await Deno.copyFile(HELLO_MODULE, join(dir, "index.ts"));
    }
  }
  // 2. One runtime for all rounds; the first request it ever serves is not a function's.
  const runtime = await startServer(
    scope,
    "runtime (cold start)",
    runtimeArgs(`--functions=${functionsDir}`),
  );
  await fetchText(client, `${runtime.origin}/_internal/health`, COLD_REQUEST_TIMEOUT_MS);
  const runtimeMs: number[] = [];
  const bareMs: number[] = [];
  // 3. Rounds alternate between the targets, so drift on the machine hits both.
  for (const name of names) {
    const runtimeStart = performance.now();
    await expectHello(client, `${runtime.origin}/cold-${name}`, runtime.child);
    const runtimeElapsed = performance.now() - runtimeStart;

    const bareStart = performance.now();
    const bare = await startServer(
      scope,
      `bare server "cold-${name}"`,
      bareServerArgs(join(bareDir, `cold-${name}`, "index.ts")),
    );
    await expectHello(client, `${bare.origin}/`, bare.child);
    const bareElapsed = performance.now() - bareStart;
    await scope.release(bare.child);

    if (name === "warmup") continue;
    runtimeMs.push(runtimeElapsed);
    bareMs.push(bareElapsed);
    progress(
      `cold start ${Number(name) + 1}/${rounds}: runtime ${runtimeElapsed.toFixed(1)} ms, ` +
        `bare ${bareElapsed.toFixed(1)} ms`,
    );
  }
  await scope.release(runtime.child);
  return { runtimeMs, bareMs };
}

/** The runtime's children once they are gone, or whatever is left after `timeoutMs`. */
async function childrenAfterExit(pid: number, timeoutMs: number): Promise<ChildProcessInfo[]> {
  const deadline = performance.now() + timeoutMs;
  while (true) {
    const children = await childrenOf(pid);
    if (children.length === 0 || performance.now() >= deadline) return children;
    await delay(20);
  }
}

/** Runs one kill/restart cycle; returns its time and, unless it ended as expected, its answer. */
async function runCycle(
  client: Deno.HttpClient,
  runtime: { child: BenchChild; origin: string },
  label: string,
): Promise<{ ms: number; unexpected?: string }> {
  const start = performance.now();
  let answer: { status: number; body: string };
  try {
    answer = await fetchText(client, `${runtime.origin}/`, CYCLE_TIMEOUT_MS);
  } catch (cause) {
    const stderr = runtime.child.stderrTail();
    throw new Error(
      `Cannot run kill/restart cycle ${label}: ${cause}` +
        (stderr ? `; the runtime's stderr ends with:\n${stderr}` : ""),
      { cause },
    );
  }
  const ms = performance.now() - start;
  const { status, body } = answer;
  return status === 200 && body.startsWith(CYCLE_ERROR_PREFIX)
    ? { ms }
    : { ms, unexpected: `${status} ${JSON.stringify(body.slice(0, 200))}` };
}

/**
 * Boots and kills a worker `cycles` times, one after the other, and reads the runtime's resident
 * memory after a warm-up and after the cycles, each time once the killed workers are gone.
 */
async function measureKillRestart(
  scope: BenchScope,
  client: Deno.HttpClient,
  cycles: number,
): Promise<KillRestartReport> {
  const runtime = await startServer(
    scope,
    "runtime (kill/restart)",
    runtimeArgs(`--main-service=${CYCLES_MAIN_SERVICE}`),
  );
  const unexpectedAnswers: Record<string, number> = {};
  const count = (unexpected: string | undefined) => {
    if (unexpected) unexpectedAnswers[unexpected] = (unexpectedAnswers[unexpected] ?? 0) + 1;
  };
  // 1. Warm-up: the first cycles compile the bootstrap and fill caches on both sides.
  for (let i = 1; i <= WARMUP_CYCLES; i++) {
    count((await runCycle(client, runtime, `warm-up ${i}`)).unexpected);
  }
  await childrenAfterExit(runtime.child.pid, WORKER_EXIT_WAIT_MS);
  const rssBefore = await residentMemoryBytes(runtime.child.pid);
  // 2. The measured cycles, one at a time: each boots a worker, which loops until it is killed.
  const cycleMs: number[] = [];
  for (let i = 1; i <= cycles; i++) {
    const { ms, unexpected } = await runCycle(client, runtime, String(i));
    cycleMs.push(ms);
    count(unexpected);
    if (i % 50 === 0 || i === cycles) progress(`kill/restart: ${i}/${cycles} cycles`);
  }
  // 3. Every worker must be gone: a live child or an unreaped zombie would be a leak.
  const left = await childrenAfterExit(runtime.child.pid, WORKER_EXIT_WAIT_MS);
  const rssAfter = await residentMemoryBytes(runtime.child.pid);
  await scope.release(runtime.child);
  return {
    cycles,
    warmupCycles: WARMUP_CYCLES,
    rssBeforeMiB: rssBefore / MIB,
    rssAfterMiB: rssAfter / MIB,
    growthMiB: (rssAfter - rssBefore) / MIB,
    cycleMedianMs: median(cycleMs),
    cycleMaxMs: Math.max(...cycleMs),
    unexpectedAnswers,
    workersLeft: left.length,
  };
}

/** Runs every measurement; children and temp dirs belong to `scope`. */
export async function runBenchmark(
  scope: BenchScope,
  options: BenchOptions,
): Promise<BenchReport> {
  const loadAverageAtStart = await loadAverage();
  let generator: Generator;
  if (options.generator === "auto") generator = (await hasWrk()) ? "wrk" : "builtin";
  else if (options.generator === "wrk" && !(await hasWrk())) {
    throw new Error("Cannot use --generator=wrk: wrk is not on PATH");
  } else generator = options.generator;
  progress(`load generator: ${generator}`);

  const client = Deno.createHttpClient({});
  try {
    // Each target runs alone, so the two never compete for the CPU.
    const bare = await startServer(scope, "bare server", bareServerArgs(HELLO_MODULE));
    await expectHello(client, `${bare.origin}/`, bare.child);
    const bareRun = await measureTarget(scope, generator, {
      ...options,
      url: `${bare.origin}/`,
      label: "bare Deno.serve",
    });
    await scope.release(bare.child);

    const runtime = await startServer(
      scope,
      "runtime",
      runtimeArgs(`--functions=${BENCH_DIR}fixtures`),
    );
    await expectHello(client, `${runtime.origin}/hello`, runtime.child);
    const runtimeRun = await measureTarget(scope, generator, {
      ...options,
      url: `${runtime.origin}/hello`,
      label: "runtime (default main)",
    });
    const runtimeWorkersAfterLoad = await runtimeWorkerCount(client, runtime.origin);
    await scope.release(runtime.child);

    progress(`cold start: ${options.coldRounds} rounds per target (after 1 untimed round)`);
    const cold = await measureColdStart(scope, client, options.coldRounds);
    const runtimeMedianMs = median(cold.runtimeMs);
    const bareMedianMs = median(cold.bareMs);

    progress(`kill/restart: ${WARMUP_CYCLES} warm-up cycles, then ${options.cycles}`);
    const killRestart = await measureKillRestart(scope, client, options.cycles);

    return {
      machine: {
        cores: navigator.hardwareConcurrency,
        cpuModel: await cpuModel(),
        deno: Deno.version.deno,
        generator,
        loadAverageAtStart,
      },
      options: {
        durationSec: options.durationSec,
        connections: options.connections,
        coldRounds: options.coldRounds,
        cycles: options.cycles,
        warmupSec: options.warmupSec,
        isQuick: options.isQuick,
      },
      throughput: {
        bare: bareRun.loaded,
        runtime: runtimeRun.loaded,
        ratio: runtimeRun.loaded.requestsPerSec / bareRun.loaded.requestsPerSec,
      },
      singleConnection: {
        bare: bareRun.single,
        runtime: runtimeRun.single,
        addedP50Ms: runtimeRun.single.p50Ms - bareRun.single.p50Ms,
      },
      coldStart: {
        ...cold,
        runtimeMedianMs,
        bareMedianMs,
        ratio: runtimeMedianMs / bareMedianMs,
      },
      runtimeWorkersAfterLoad,
      killRestart,
    };
  } finally {
    client.close();
  }
}

/** JSON replacer: milliseconds and rates to three decimals. */
function roundFigures(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isInteger(value)
    ? Math.round(value * 1000) / 1000
    : value;
}

function row(label: string, result: LoadResult, note = ""): string {
  return label.padEnd(26) + result.requestsPerSec.toFixed(1).padStart(10) +
    result.p50Ms.toFixed(2).padStart(10) + result.p99Ms.toFixed(2).padStart(10) +
    (note ? `   ${note}` : "");
}

/** The human-readable report: the table, then warnings about failed requests. */
export function formatReport(report: BenchReport): string[] {
  const { throughput, singleConnection, coldStart, machine, killRestart } = report;
  const c = report.options.connections;
  const lines = [
    "target".padEnd(26) + "req/s".padStart(10) + "p50 ms".padStart(10) + "p99 ms".padStart(10),
    row(`bare Deno.serve`, throughput.bare, `${c} connections`),
    row(
      `runtime (default main)`,
      throughput.runtime,
      `${c} connections, ratio ${throughput.ratio.toFixed(2)}`,
    ),
    row(`bare Deno.serve`, singleConnection.bare, "1 connection"),
    row(
      `runtime (default main)`,
      singleConnection.runtime,
      `1 connection, added p50 ${singleConnection.addedP50Ms.toFixed(3)} ms`,
    ),
    `cold start: runtime median ${coldStart.runtimeMedianMs.toFixed(1)} ms, ` +
    `bare deno run median ${coldStart.bareMedianMs.toFixed(1)} ms, ` +
    `ratio ${coldStart.ratio.toFixed(2)} (${coldStart.runtimeMs.length} rounds each)`,
    `kill/restart cycles: ${killRestart.cycles}, ` +
    `main RSS before ${killRestart.rssBeforeMiB.toFixed(1)} MiB, ` +
    `after ${killRestart.rssAfterMiB.toFixed(1)} MiB, ` +
    `growth ${killRestart.growthMiB.toFixed(1)} MiB`,
    `kill/restart: median cycle ${killRestart.cycleMedianMs.toFixed(1)} ms, ` +
    `max ${killRestart.cycleMaxMs.toFixed(1)} ms, worker processes left ${killRestart.workersLeft}`,
    `machine: ${machine.cores} cores, ${machine.cpuModel}, deno ${machine.deno}, ` +
    `generator ${machine.generator}, load average at start ${machine.loadAverageAtStart ?? "?"}`,
  ];
  if (machine.generator === "builtin") {
    lines.push(
      "note: the builtin generator runs in the bench process and shares the CPU with the " +
        "servers; on few cores it, not the server, may set the req/s ceiling",
    );
  }
  if (report.runtimeWorkersAfterLoad !== null) {
    lines.push(`runtime workers for "hello" after load: ${report.runtimeWorkersAfterLoad}`);
  }
  const runs: [string, LoadResult][] = [
    [`bare, ${c} connections`, throughput.bare],
    [`runtime, ${c} connections`, throughput.runtime],
    ["bare, 1 connection", singleConnection.bare],
    ["runtime, 1 connection", singleConnection.runtime],
  ];
  for (const [label, result] of runs) {
    if (result.non2xx > 0 || result.errors > 0) {
      lines.push(
        `warning: ${label}: ${result.non2xx} responses with status >= 400, ` +
          `${result.errors} socket errors, of ${result.requests} requests`,
      );
    }
  }
  if (killRestart.workersLeft > 0) {
    lines.push(
      `warning: kill/restart: ${killRestart.workersLeft} worker process(es) still under the ` +
        `runtime ${WORKER_EXIT_WAIT_MS / 1000} s after the last cycle`,
    );
  }
  for (const [answer, times] of Object.entries(killRestart.unexpectedAnswers)) {
    lines.push(
      `warning: kill/restart: ${times} of ${killRestart.warmupCycles + killRestart.cycles} ` +
        `cycles answered ${answer} instead of a WorkerRequestCancelled error`,
    );
  }
  return lines;
}

async function main(argv: string[]): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseBenchArgs(argv);
  } catch (error) {
    writeLine(Deno.stderr, `error: ${(error as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (!options) {
    writeLine(Deno.stdout, USAGE);
    return 0;
  }
  await using scope = new BenchScope((message) => progress(`warning: ${message}`));

  // Ctrl-C or a SIGTERM still ends every child and removes the temp dirs.
  const onSignal = async () => {
    progress("interrupted, cleaning up");
    await scope.disposeAll();
    Deno.exit(130);
  };
  // A backstop far above the expected run time; every step also has its own timeout.
  const budgetMs = (
    2 * (options.warmupSec + 2 * options.durationSec) + 30 * (options.coldRounds + 1) +
    2 * (WARMUP_CYCLES + options.cycles) + 240
  ) * 1000;
  const watchdog = setTimeout(async () => {
    progress(`gave up after ${budgetMs / 1000} s, cleaning up`);
    await scope.disposeAll();
    Deno.exit(1);
  }, budgetMs);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const report = await runBenchmark(scope, options);
    const out = options.isJson ? Deno.stderr : Deno.stdout;
    for (const line of formatReport(report)) writeLine(out, line);
    if (options.isJson) writeLine(Deno.stdout, JSON.stringify(report, roundFigures));
    return 0;
  } catch (error) {
    // After a signal, the errors of the steps it cut short are expected noise.
    if (!scope.isDisposing) {
      progress(`failed: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
    }
    return 1;
  } finally {
    // Dispose while the signal handlers are still installed, so a Ctrl-C now cannot cut it short.
    await scope.disposeAll();
    clearTimeout(watchdog);
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
}

if (import.meta.main) {
  const code = await main(Deno.args);
  // Exit only after `await using` has disposed the scope inside main().
  Deno.exitCode = code;
}
