/**
 * Entry of every user worker process. Reads its boot config from stdin, loads the function by a
 * computed dynamic import (so `--allow-read` governs the function's whole module graph), serves
 * its handler on a private Unix socket and reports one status line. Exits when stdin closes, so
 * a worker never outlives the main runtime.
 */

import {
  BOOT_ERROR_EXIT_CODE,
  formatStatusLine,
  isWorkerBootConfig,
  LEVEL_MARK,
  parseControlLine,
  type WorkerBootConfig,
  type WorkerControl,
  type WorkerStatus,
} from "../runtime/protocol.ts";
import {
  defaultExportHandler,
  installServeCapture,
  type ServeCapture,
} from "../runtime/serve_capture.ts";
import { serveOnSocket } from "./serve_adapter.ts";

const exitProcess = Deno.exit.bind(Deno);
const realServe = Deno.serve.bind(Deno) as typeof Deno.serve;
const encoder = new TextEncoder();

function report(status: WorkerStatus): void {
  Deno.stdout.writeSync(encoder.encode(formatStatusLine(status)));
}

function fail(message: string): never {
  Deno.stderr.writeSync(encoder.encode(`worker bootstrap: ${message}\n`));
  return exitProcess(BOOT_ERROR_EXIT_CODE);
}

/** Reads the first stdin line (the boot config), then watches stdin for EOF in the background. */
async function readConfigAndWatchLifeline(): Promise<WorkerBootConfig> {
  const reader = Deno.stdin.readable.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) fail("stdin closed before the boot config arrived");
    text += decoder.decode(value, { stream: true });
  }
  let config: unknown;
  try {
    config = JSON.parse(text.slice(0, text.indexOf("\n")));
  } catch {
    fail("the boot config is not valid JSON");
  }
  if (!isWorkerBootConfig(config)) fail("the boot config has the wrong shape");
  let pending = text.slice(text.indexOf("\n") + 1);
  // The main runtime holds the other end of stdin: EOF means it is gone, and so must we be.
  // Until then, each further line is a control message.
  (async () => {
    try {
      while (true) {
        let newline: number;
        while ((newline = pending.indexOf("\n")) !== -1) {
          const control = parseControlLine(pending.slice(0, newline));
          pending = pending.slice(newline + 1);
          if (control) onControl(control);
        }
        const { value, done } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
      }
    } finally {
      exitProcess(0);
    }
  })();
  return config;
}

function onControl(control: WorkerControl): void {
  // Supabase dispatches a CustomEvent whose detail is `{ reason }`. A handler that loops or
  // allocates here is still stopped: the limits are enforced from outside the process.
  globalThis.dispatchEvent(
    new CustomEvent(control.type, { detail: { reason: control.reason }, cancelable: true }),
  );
}

/**
 * Installs the user-side `EdgeRuntime`, whose only member is `waitUntil`: the supervisor is told
 * how many such promises are pending, and does not end an idle worker while any is.
 */
function installUserEdgeRuntime(statusToken: string): void {
  let pendingTasks = 0;
  const reportPending = () =>
    report({ token: statusToken, kind: "pending_tasks", count: pendingTasks });
  const waitUntil = <T>(promise: Promise<T>): Promise<T> => {
    pendingTasks++;
    reportPending();
    Promise.resolve(promise).finally(() => {
      pendingTasks--;
      reportPending();
    }).catch(() => {});
    return promise;
  };
  Object.defineProperty(globalThis, "EdgeRuntime", {
    value: Object.freeze({ waitUntil }),
    writable: false,
    configurable: false,
  });
}

/**
 * True when the import failed while building the module graph (not found, syntax error,
 * unresolvable specifier) rather than while running the module: then no stack frame lies in
 * user code, only at this file's `import()`.
 */
function isGraphError(error: unknown): boolean {
  if (!(error instanceof Error) || typeof error.stack !== "string") return false;
  const head = String(error);
  const trace = error.stack.startsWith(head) ? error.stack.slice(head.length) : error.stack;
  return trace.split("\n")
    .filter((line) => line.trimStart().startsWith("at "))
    .every((line) => line.includes(import.meta.url));
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

async function loadFunction(config: WorkerBootConfig, capture: ServeCapture) {
  let module: Record<string, unknown>;
  try {
    module = await import(config.entryUrl);
  } catch (error) {
    if (isGraphError(error)) {
      const message = error instanceof Error ? error.message : String(error);
      report({
        token: config.statusToken,
        kind: "boot_error",
        message: `failed to bootstrap runtime: failed to create the graph: ${message}`,
      });
      return exitProcess(BOOT_ERROR_EXIT_CODE);
    }
    // deno-lint-ignore no-console
    console.error(error);
    report({
      token: config.statusToken,
      kind: "evaluation_error",
      message: `event loop error while evaluating the module: ${describe(error)}`,
    });
    return exitProcess(1);
  }
  const captured = capture.current;
  const handler = captured?.handler ?? defaultExportHandler(module);
  if (!handler) {
    report({
      token: config.statusToken,
      kind: "evaluation_error",
      message:
        "event loop error while evaluating the module: the function neither called Deno.serve nor exported a default { fetch } handler",
    });
    return exitProcess(1);
  }
  serveOnSocket({
    socketPath: config.socketPath,
    handler,
    onError: captured?.onError,
    serve: realServe,
  });
  captured?.onListen?.({ transport: "tcp", hostname: "0.0.0.0", port: captured.port ?? 9999 });
  report({ token: config.statusToken, kind: "ready" });
}

const config = await readConfigAndWatchLifeline();
const visibleEnvNames = new Set(config.visibleEnvNames);
for (const name of Object.keys(Deno.env.toObject())) {
  if (!visibleEnvNames.has(name)) Deno.env.delete(name);
}
// As on Supabase, a function's environment is read-only: set throws NotSupported (process.env
// assignments go through it too) and delete does nothing.
Object.defineProperty(Deno.env, "set", {
  value: () => {
    throw new Deno.errors.NotSupported("The operation is not supported");
  },
});
Object.defineProperty(Deno.env, "delete", { value: () => {} });
// console.debug (stdout) and console.warn (stderr) lines carry their level to the runtime.
for (const [method, letter] of [["debug", "D"], ["warn", "W"]] as const) {
  const original = console[method].bind(console);
  // deno-lint-ignore no-console
  console[method] = (...args: unknown[]) => original(`${LEVEL_MARK}${letter}`, ...args);
}
const capture = installServeCapture();
installUserEdgeRuntime(config.statusToken);
// Supabase makes Deno.exit a no-op in user workers: a function cannot end its own worker.
Object.defineProperty(Deno, "exit", { value: () => {}, writable: true, configurable: true });
await loadFunction(config, capture);
