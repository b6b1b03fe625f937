/**
 * Serves a function's handler on the worker's private Unix socket, whichever style the function
 * used (`Deno.serve` in any form, or `export default { fetch }`), with Supabase's answers for a
 * handler that throws (500) or returns something that is not a Response (502).
 */

import type { ServeHandler } from "../runtime/serve_capture.ts";

/** Options of {@linkcode serveOnSocket}. */
export interface ServeOnSocketOptions {
  /** The socket path to listen on. */
  socketPath: string;
  /** The function's handler. */
  handler: ServeHandler;
  /** The function's own error handler, if it gave one to `Deno.serve`. */
  onError?: (error: unknown) => Response | Promise<Response>;
  /** The real `Deno.serve`, saved before it was made virtual. */
  serve: typeof Deno.serve;
}

function logHandlerError(error: unknown): void {
  // deno-lint-ignore no-console
  console.error(error);
}

/**
 * Starts serving `handler` on `socketPath`.
 *
 * @returns the server, already listening
 */
export function serveOnSocket(options: ServeOnSocketOptions): Deno.HttpServer<Deno.UnixAddr> {
  const { handler, onError } = options;
  const failed = async (error: unknown): Promise<Response> => {
    logHandlerError(error);
    if (onError) {
      try {
        return await onError(error);
      } catch (nested) {
        logHandlerError(nested);
      }
    }
    return new Response("Internal Server Error", { status: 500 });
  };
  const checked = (response: unknown): Response => {
    if (response instanceof Response) return response;
    logHandlerError(new TypeError("Return value from the handler must be a Response"));
    return new Response("Bad Gateway", { status: 502 });
  };
  // A synchronous Response is returned as is: no promise on the common path of simple handlers.
  const guarded = (request: Request, info: Deno.ServeHandlerInfo<Deno.Addr>) => {
    let result: unknown;
    try {
      result = handler(request, info);
    } catch (error) {
      return failed(error);
    }
    if (result instanceof Response) return result;
    return Promise.resolve(result).then(checked, failed);
  };
  return options.serve({
    path: options.socketPath,
    transport: "unix",
    onListen() {},
    handler: guarded,
  });
}
