/**
 * The runtime's TCP listener: counts requests and hands every one to the main service's handler.
 */

import { PayloadTooLargeError } from "./errors.ts";
import { formatError, type Logger } from "./log.ts";
import { tagClientAddress, tagRequest } from "./request_tags.ts";
import type { CapturedServe } from "./serve_capture.ts";

/** The real `Deno.serve`, saved when this module loads, before user code can make it virtual. */
const realServe = Deno.serve.bind(Deno) as typeof Deno.serve;

/** Settings of {@linkcode startServer}. */
export interface ServerOptions {
  hostname: string;
  port: number;
  /**
   * The main service's serve call (handler and optional `onError`). Read on every request, so
   * replacing its fields swaps the main service without touching the listener.
   */
  service: Pick<CapturedServe, "handler" | "onError">;
  /** Answer 504 when the main service has not started its response in this time; 0 = never. */
  requestIdleTimeoutMs: number;
  /** Answer 413 to request bodies larger than this; `undefined` = no limit. */
  maxRequestBodyBytes: number | undefined;
  logger: Logger;
}

/** Request counters, as `getRuntimeMetrics()` reports them. */
export interface RequestCounters {
  received: number;
  handled: number;
}

/** A listening server. */
export interface RunningServer {
  readonly addr: Deno.NetAddr;
  readonly counters: Readonly<RequestCounters>;
  /** Stops accepting connections and resolves when in-flight requests are answered. */
  shutdown(): Promise<void>;
}

function payloadTooLarge(): Response {
  return Response.json(
    { code: "PAYLOAD_TOO_LARGE", message: new PayloadTooLargeError().message },
    { status: 413 },
  );
}

/**
 * A copy of `request` whose body errors once more than `limit` bytes have come (a body without a
 * Content-Length); the relay then fails the request instead of streaming on.
 */
function capBody(request: Request, limit: number): Request {
  let seen = 0;
  const counted = request.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.length;
        if (seen > limit) controller.error(new PayloadTooLargeError());
        else controller.enqueue(chunk);
      },
    }),
  );
  const copy = new Request(request, { body: counted, duplex: "half" } as RequestInit);
  tagRequest(request, copy);
  return copy;
}

function internalError(): Response {
  return Response.json(
    { code: "Internal Server Error", message: "Request failed due to an internal server error" },
    { status: 500 },
  );
}

/**
 * Starts listening. Resolves once the socket is bound.
 */
export function startServer(options: ServerOptions): Promise<RunningServer> {
  const { service, logger } = options;
  const counters: RequestCounters = { received: 0, handled: 0 };
  const onServiceError = async (error: unknown): Promise<Response> => {
    logger.error(`main service failed to answer: ${formatError(error)}`);
    if (!service.onError) return internalError();
    try {
      const answer = await service.onError(error);
      if (answer instanceof Response) return answer;
    } catch (nested) {
      logger.error(`main service onError failed: ${formatError(nested)}`);
    }
    return internalError();
  };
  const { requestIdleTimeoutMs } = options;
  const callService = requestIdleTimeoutMs > 0
    ? (request: Request, info: Deno.ServeHandlerInfo<Deno.Addr>) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<Response>((resolve) => {
        timer = setTimeout(
          () => resolve(new Response(null, { status: 504 })),
          requestIdleTimeoutMs,
        );
      });
      return Promise.race([Promise.resolve(service.handler(request, info)), timedOut])
        .finally(() => clearTimeout(timer));
    }
    : (request: Request, info: Deno.ServeHandlerInfo<Deno.Addr>) => service.handler(request, info);
  const { maxRequestBodyBytes } = options;
  const handler = async (request: Request, info: Deno.ServeHandlerInfo<Deno.Addr>) => {
    counters.received++;
    if (maxRequestBodyBytes !== undefined && request.body !== null) {
      const declared = request.headers.get("content-length");
      if (declared !== null && Number(declared) > maxRequestBodyBytes) {
        counters.handled++;
        return payloadTooLarge();
      }
      if (declared === null) request = capBody(request, maxRequestBodyBytes);
    }
    const remote = info.remoteAddr;
    if (remote.transport === "tcp") tagClientAddress(request, remote.hostname);
    try {
      const response = await callService(request, info);
      if (response instanceof Response) return response;
      return await onServiceError(new TypeError("Main service handler did not return a Response"));
    } catch (error) {
      if (error instanceof PayloadTooLargeError) return payloadTooLarge();
      return await onServiceError(error);
    } finally {
      counters.handled++;
    }
  };
  return new Promise((resolve) => {
    const server = realServe({
      hostname: options.hostname,
      port: options.port,
      onListen(addr) {
        resolve({ addr, counters, shutdown: () => server.shutdown() });
      },
      handler,
    });
  });
}
