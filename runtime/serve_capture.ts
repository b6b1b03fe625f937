/**
 * Makes `Deno.serve` virtual: user code (a main service or a function) calls it in any of its
 * forms, no socket is opened, and the runtime takes the handler to serve on its own listener.
 * Shared by the main runtime and `workers/bootstrap.ts`, so it imports nothing.
 */

/** A request handler as `Deno.serve` takes it. */
export type ServeHandler = (
  request: Request,
  info: Deno.ServeHandlerInfo<Deno.Addr>,
) => Response | Promise<Response>;

/** A listen callback as `Deno.serve` takes it. */
export type ListenCallback = (addr: Deno.NetAddr) => void;

/** What one `Deno.serve` call asked for. */
export interface CapturedServe {
  handler: ServeHandler;
  onListen: ListenCallback | undefined;
  onError: ((error: unknown) => Response | Promise<Response>) | undefined;
  /** The port the caller asked for (ignored, but reported back to `onListen`). */
  port: number | undefined;
}

/** The captured calls and a way to end the fake servers handed back to the caller. */
export interface ServeCapture {
  /** The most recent call, or `undefined` if user code never called `Deno.serve`. */
  readonly current: CapturedServe | undefined;
  /** Resolves the `finished` promise of every fake server (at shutdown). */
  finish(): void;
}

type ServeArgs = unknown[];

function isFunction(value: unknown): value is (...args: never[]) => unknown {
  return typeof value === "function";
}

/**
 * Reads a `Deno.serve` call: `(handler)`, `(options, handler)` or `({ handler, ...options })`.
 *
 * @returns the handler and the options that matter, or `undefined` when no handler was given
 */
export function readServeArgs(args: ServeArgs): CapturedServe | undefined {
  const [first, second] = args;
  let options: Record<string, unknown> = {};
  let handler: unknown;
  if (isFunction(first)) {
    handler = first;
  } else if (typeof first === "object" && first !== null) {
    options = first as Record<string, unknown>;
    handler = isFunction(second) ? second : options.handler;
  }
  if (!isFunction(handler)) return undefined;
  return {
    handler: handler as ServeHandler,
    onListen: isFunction(options.onListen) ? options.onListen as ListenCallback : undefined,
    onError: isFunction(options.onError) ? options.onError as CapturedServe["onError"] : undefined,
    port: typeof options.port === "number" ? options.port : undefined,
  };
}

/**
 * Replaces `Deno.serve` with a function that records its handler and returns a server-shaped
 * object whose `finished` settles when {@linkcode ServeCapture.finish} is called.
 *
 * @throws {TypeError} from the replacement, when it is called without a handler (as Deno does)
 */
export function installServeCapture(): ServeCapture {
  let current: CapturedServe | undefined;
  let finishAll!: () => void;
  const finished = new Promise<void>((resolve) => finishAll = resolve);
  const fakeServe = (...args: ServeArgs) => {
    const captured = readServeArgs(args);
    if (!captured) throw new TypeError("A handler function must be provided");
    current = captured;
    const addr = {
      transport: "tcp" as const,
      hostname: "0.0.0.0",
      port: captured.port ?? 9999,
    };
    return {
      finished,
      addr,
      shutdown: () => finished,
      ref() {},
      unref() {},
      [Symbol.asyncDispose]: () => finished,
    };
  };
  Object.defineProperty(Deno, "serve", {
    value: fakeServe,
    writable: true,
    configurable: true,
    enumerable: true,
  });
  return {
    get current() {
      return current;
    },
    finish: () => finishAll(),
  };
}

/**
 * Finds a handler in a module's default export of the `{ fetch }` shape (`deno serve` style).
 */
export function defaultExportHandler(module: Record<string, unknown>): ServeHandler | undefined {
  const exported = module.default;
  if (typeof exported !== "object" || exported === null) return undefined;
  const fetch = (exported as Record<string, unknown>).fetch;
  if (!isFunction(fetch)) return undefined;
  return (request, info) =>
    (fetch as ServeHandler).call(exported, request, info) as Response | Promise<Response>;
}
