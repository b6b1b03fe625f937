/**
 * Command-line entry: parses flags, resolves the configuration, starts the runtime and turns
 * SIGTERM (drain, then exit 0, or 1 when the drain timed out) and SIGINT (exit at once) into a
 * clean stop that leaves no worker process behind.
 */

import { parseArgs } from "node:util";
import {
  ConfigError,
  createLogger,
  junitXml,
  listFunctions,
  printLine,
  resolveConfig,
  type ResolvedConfig,
  runSmoke,
  type RuntimeOptions,
  startRuntime,
} from "./runtime/mod.ts";

const VERSION = "0.1.0";

const USAGE = `Usage: main.ts start [options]
       main.ts smoke [options] [--junit FILE] [--timeout MS] [FUNCTION...]

start  serves Supabase-style edge functions, each in its own sandboxed Deno process.
smoke  boots the functions (all, or those named) with the same limits and sandbox, sends the
       requests in each <function>/smoke.json (else GET /<name>, expecting no 5xx), prints one
       line per case and "N passed, M failed", and exits 1 if any failed. --junit writes JUnit
       XML; --timeout bounds each request (default 10000 ms).

Options:
  -p, --port <PORT>                          TCP port (default 9000, env EDGE_RUNTIME_PORT)
  -i, --ip <HOST>                            bind address (default 0.0.0.0)
      --main-service <DIR>                   user-written main service (default: built-in)
      --functions <DIR>                      functions folder of the built-in main service
                                             (default ./functions, else ./supabase/functions)
      --no-verify-jwt                        built-in main service: no JWT checks (JWT_SECRET / JWT_JWKS)
      --memory-limit-mb <MB>                 built-in main service: worker memory limit (256)
      --worker-timeout-ms <MS>               built-in main service: worker wall clock, 0 = none (400000)
      --cpu-time-soft-limit-ms <MS>          built-in main service: CPU soft limit (1000)
      --cpu-time-hard-limit-ms <MS>          built-in main service: CPU hard limit (2000)
      --event-worker <DIR>                   module that reads runtime events (new EventManager())
      --policy <per_worker|per_request|oneshot>  worker policy (default per_worker)
      --max-parallelism <N>                  most workers per function (default: CPU count)
      --request-wait-timeout <MS>            how long a request waits for a worker (default 10000)
      --main-worker-request-idle-timeout <MS>  504 when the main service has not answered in time
      --user-worker-request-idle-timeout <MS>  a worker's response head or next chunk must come in time
      --request-read-timeout <MS>            (not implemented yet)
      --max-request-body-size <BYTES>        413 for larger request bodies (default: no limit)
      --static <GLOB>                        static files every function may read (repeatable)
      --graceful-exit-timeout <S>            SIGTERM drain limit in seconds (default 15)
      --dispatch-beforeunload-wall-clock-ratio <PCT>  beforeunload at PCT of the wall clock (default 90)
      --dispatch-beforeunload-cpu-ratio <PCT>         beforeunload at PCT of the CPU hard limit (default 90)
      --dispatch-beforeunload-memory-ratio <PCT>      beforeunload at PCT of the memory limit (default 90)
      --inspect[=HOST:PORT]                  open the V8 inspector in user workers (default 127.0.0.1:9229)
      --env-file <FILE>                      NAME=value lines added to the functions' environment
      --watch                                restart a function's worker when its files change
  -v, --verbose                              debug logging
  -q, --quiet                                no logging
  -h, --help                                 show this help
  -V, --version                              show the version`;

const HINT = "Run 'main.ts start --help' for usage.";

/** Flags that are parsed and validated but whose behaviour has not landed yet. */
const NOT_YET_IMPLEMENTED = ["request-read-timeout"] as const;

function isDirectory(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function usageError(message: string): never {
  // deno-lint-ignore no-console
  console.error(`error: ${message}\n${HINT}`);
  Deno.exit(2);
}

function parseFlags(argv: string[]) {
  // `--inspect` takes an optional value, which parseArgs cannot express.
  const args = argv.map((arg) => arg === "--inspect" ? "--inspect=127.0.0.1:9229" : arg);
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      port: { type: "string", short: "p" },
      ip: { type: "string", short: "i" },
      "main-service": { type: "string" },
      functions: { type: "string" },
      "event-worker": { type: "string" },
      policy: { type: "string" },
      "max-parallelism": { type: "string" },
      "request-wait-timeout": { type: "string" },
      "main-worker-request-idle-timeout": { type: "string" },
      "user-worker-request-idle-timeout": { type: "string" },
      "request-read-timeout": { type: "string" },
      "max-request-body-size": { type: "string" },
      static: { type: "string", multiple: true },
      "graceful-exit-timeout": { type: "string" },
      "dispatch-beforeunload-wall-clock-ratio": { type: "string" },
      "dispatch-beforeunload-cpu-ratio": { type: "string" },
      "dispatch-beforeunload-memory-ratio": { type: "string" },
      inspect: { type: "string" },
      "env-file": { type: "string" },
      watch: { type: "boolean" },
      "no-verify-jwt": { type: "boolean" },
      junit: { type: "string" },
      "memory-limit-mb": { type: "string" },
      "worker-timeout-ms": { type: "string" },
      "cpu-time-soft-limit-ms": { type: "string" },
      "cpu-time-hard-limit-ms": { type: "string" },
      timeout: { type: "string" },
      verbose: { type: "boolean", short: "v" },
      quiet: { type: "boolean", short: "q" },
      help: { type: "boolean", short: "h" },
      version: { type: "boolean", short: "V" },
    },
  });
}

async function main(argv: string[]): Promise<void> {
  let parsed: ReturnType<typeof parseFlags>;
  try {
    parsed = parseFlags(argv);
  } catch (error) {
    usageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    printLine(USAGE);
    return;
  }
  if (values.version) {
    printLine(`edge-runtime ${VERSION}\ndeno ${Deno.version.deno}`);
    return;
  }
  const command = positionals[0];
  if (command !== "start" && command !== "smoke") {
    usageError(
      command === undefined
        ? "Missing command: expected 'start' or 'smoke'"
        : `Unknown command "${positionals.join(" ")}": expected 'start' or 'smoke'`,
    );
  }
  if (command === "start" && positionals.length > 1) {
    usageError(`Unexpected argument "${positionals[1]}" after 'start'`);
  }
  if (command === "start" && (values.junit !== undefined || values.timeout !== undefined)) {
    usageError("Flags --junit and --timeout belong to 'smoke'");
  }
  const options: RuntimeOptions = {
    // smoke listens on a free loopback port unless told otherwise.
    port: values.port ?? (command === "smoke" ? "0" : undefined),
    ip: values.ip ?? (command === "smoke" ? "127.0.0.1" : undefined),
    mainService: values["main-service"],
    functions: values.functions,
    eventWorker: values["event-worker"],
    policy: values.policy,
    maxParallelism: values["max-parallelism"],
    requestWaitTimeout: values["request-wait-timeout"],
    mainWorkerRequestIdleTimeout: values["main-worker-request-idle-timeout"],
    userWorkerRequestIdleTimeout: values["user-worker-request-idle-timeout"],
    requestReadTimeout: values["request-read-timeout"],
    maxRequestBodySize: values["max-request-body-size"],
    static: values.static,
    gracefulExitTimeout: values["graceful-exit-timeout"],
    dispatchBeforeunloadWallClockRatio: values["dispatch-beforeunload-wall-clock-ratio"],
    dispatchBeforeunloadCpuRatio: values["dispatch-beforeunload-cpu-ratio"],
    dispatchBeforeunloadMemoryRatio: values["dispatch-beforeunload-memory-ratio"],
    inspect: values.inspect,
    envFile: values["env-file"],
    watch: values.watch,
    noVerifyJwt: values["no-verify-jwt"],
    memoryLimitMb: values["memory-limit-mb"],
    workerTimeoutMs: values["worker-timeout-ms"],
    cpuTimeSoftLimitMs: values["cpu-time-soft-limit-ms"],
    cpuTimeHardLimitMs: values["cpu-time-hard-limit-ms"],
    verbose: values.verbose,
    quiet: values.quiet,
  };
  // Like `supabase functions serve`, a Supabase project's functions folder is found by itself.
  if (options.functions === undefined && !isDirectory("./functions")) {
    if (isDirectory("./supabase/functions")) options.functions = "./supabase/functions";
  }
  let envFileText: string | undefined;
  if (options.envFile !== undefined) {
    try {
      envFileText = await Deno.readTextFile(options.envFile);
    } catch (error) {
      usageError(`Cannot read --env-file "${options.envFile}": ${(error as Error).message}`);
    }
  }
  let config;
  try {
    config = resolveConfig(options, {
      cwd: Deno.cwd(),
      cpuCount: navigator.hardwareConcurrency,
      env: Deno.env.toObject(),
      envFileText,
    });
  } catch (error) {
    if (error instanceof ConfigError) usageError(error.message);
    throw error;
  }
  if (command === "smoke") {
    await smoke(config, positionals.slice(1), values);
    return;
  }
  const logger = createLogger(config.logLevel);
  for (const flag of NOT_YET_IMPLEMENTED) {
    if (values[flag] !== undefined) logger.warn(`--${flag} is accepted but not implemented yet`);
  }
  if (values["max-parallelism"] !== undefined && config.policy === "oneshot") {
    logger.warn("--max-parallelism is forced to 1 under the oneshot policy");
  }

  // A main service is user code running in this process: its stray errors must not end it.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    logger.error(`unhandled rejection in the main runtime: ${String(event.reason)}`);
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    logger.error(`uncaught error in the main runtime: ${String(event.error)}`);
  });

  let runtime;
  try {
    runtime = await startRuntime({ config, logger });
  } catch (error) {
    logger.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
  const { hostname, port } = runtime.addr;
  const origin = `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
  printLine(`Listening on ${origin}/`);
  if (!config.mainServicePath) {
    const shown = hostname === "0.0.0.0" || hostname === "::" ? `http://127.0.0.1:${port}` : origin;
    logger.info(`Serving functions on ${shown}/functions/v1/<function-name>`);
    for (const name of await listFunctions(config.functionsPath).catch(() => [])) {
      logger.info(`  - ${shown}/functions/v1/${name}`);
    }
  }

  let stopping = false;
  const stop = async (drainTimeoutMs: number) => {
    if (stopping) return;
    stopping = true;
    const { timedOut } = await runtime.shutdown(drainTimeoutMs);
    Deno.exit(timedOut ? 1 : 0);
  };
  Deno.addSignalListener("SIGTERM", () => stop(config.gracefulExitTimeoutMs));
  Deno.addSignalListener("SIGINT", () => stop(0));
}

/** `main.ts smoke`: runs the functions' smoke cases and exits 0 only when all pass. */
async function smoke(
  config: ResolvedConfig,
  names: string[],
  values: { junit?: string; timeout?: string; verbose?: boolean },
): Promise<never> {
  const timeoutText = values.timeout ?? "10000";
  if (!/^\d+$/.test(timeoutText) || Number(timeoutText) === 0) {
    usageError(`Invalid value "${timeoutText}" for --timeout: expected milliseconds above 0`);
  }
  // Function output and runtime logs only with -v: the report is what CI reads.
  const logger = createLogger(values.verbose ? "debug" : "error");
  let results;
  try {
    results = await runSmoke({
      config,
      logger,
      names,
      timeoutMs: Number(timeoutText),
      print: printLine,
    });
  } catch (error) {
    if (error instanceof ConfigError) usageError(error.message);
    throw error;
  }
  if (values.junit !== undefined) await Deno.writeTextFile(values.junit, junitXml(results));
  Deno.exit(results.every((r) => r.passed) ? 0 : 1);
}

if (import.meta.main) await main(Deno.args);
