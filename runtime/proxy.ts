/**
 * The hot path: forwards a `Request` to a worker over its Unix socket as HTTP/1.1 and returns the
 * worker's `Response`, streaming both bodies with backpressure. Connections are kept alive and
 * reused. A plain `fetch` through `Deno.createHttpClient` reached about half the throughput of
 * this relay on our 2-core machine, which is why it is hand-written. The only module that opens
 * Unix-socket clients.
 */

import { clientAbortWatch, type PendingHead } from "./client_abort_watch.ts";
import { PayloadTooLargeError, RuntimeError } from "./errors.ts";
import {
  type BodyFraming,
  BufferedConn,
  buildResponse,
  ownedBody,
  type ParsedHead,
  parseResponseHead,
  pumpRequestBody,
  READ_CHUNK_BYTES,
  requestHead,
} from "./http1.ts";
import { originalRequestOf } from "./request_tags.ts";
import { relayWebSocket } from "./websocket_relay.ts";

/** Options of {@linkcode UnixHttpClient.request}. */
export interface ProxyRequestOptions {
  /** Aborts the exchange (the caller's signal; the client's is `request.signal`). */
  signal?: AbortSignal;
  /** Called once when the response body has been fully relayed or the exchange failed. */
  onDone?: () => void;
  /**
   * Fail with `IDLE_TIMEOUT` when the response head, or the next body chunk, takes longer than
   * this. 0 or absent: no limit.
   */
  idleTimeoutMs?: number;
  /** Told the request's `x-request-id` (the client's, or the one made for it). */
  onRequestId?: (requestId: string) => void;
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("The signal has been aborted", "AbortError");
}

function toRuntimeError(error: unknown): unknown {
  if (error instanceof RuntimeError || error instanceof DOMException) return error;
  return new RuntimeError("WORKER_CRASHED", "connection closed before message completed", {
    cause: error,
  });
}

/**
 * A pool of kept-alive HTTP/1.1 connections to one worker's Unix socket.
 */
export class UnixHttpClient {
  readonly #socketPath: string;
  readonly #idle: BufferedConn[] = [];
  readonly #all = new Set<BufferedConn>();
  #closed = false;

  constructor(socketPath: string) {
    this.#socketPath = socketPath;
  }

  /** Number of connections open now (idle and busy). */
  get connectionCount(): number {
    return this.#all.size;
  }

  /** Closes every connection; requests in flight fail. */
  close(): void {
    this.#closed = true;
    for (const conn of this.#all) conn.close();
    this.#all.clear();
    this.#idle.length = 0;
  }

  async #connect(): Promise<BufferedConn> {
    const conn = new BufferedConn(
      await Deno.connect({ transport: "unix", path: this.#socketPath }),
    );
    this.#all.add(conn);
    return conn;
  }

  async #connectOrFail(): Promise<BufferedConn> {
    try {
      return await this.#connect();
    } catch (error) {
      throw toRuntimeError(error);
    }
  }

  #release(conn: BufferedConn, reusable: boolean): void {
    if (reusable && !this.#closed && !conn.isClosed && conn.buffered === 0) {
      this.#idle.push(conn);
      return;
    }
    conn.close();
    this.#all.delete(conn);
  }

  /**
   * Sends `request` to the worker and resolves with its response head; the body streams after.
   * `options.signal` is honoured at once; the client's `request.signal` from the moment the
   * response head is late (see `client_abort_watch.ts`).
   *
   * @throws {RuntimeError} `WORKER_CRASHED` when the connection fails, `BAD_RESPONSE` on
   *   malformed HTTP; the signal's reason when aborted
   */
  async request(request: Request, options: ProxyRequestOptions = {}): Promise<Response> {
    const { signal } = options;
    signal?.throwIfAborted();
    if (this.#closed) {
      throw new RuntimeError("WORKER_CRASHED", "connection closed before message completed");
    }
    const reused = this.#idle.pop();
    try {
      return await this.#exchange(request, reused ?? await this.#connectOrFail(), options);
    } catch (error) {
      // A kept-alive connection the worker closed while idle fails before any response byte;
      // a request without a body can safely go again on a fresh connection.
      const retriable = reused !== undefined && request.body === null &&
        !reused.sawResponseBytes && !(error instanceof DOMException) && !this.#closed &&
        !(signal?.aborted || request.signal.aborted);
      if (!retriable) throw error;
      return await this.#exchange(request, await this.#connectOrFail(), options);
    }
  }

  async #exchange(
    request: Request,
    conn: BufferedConn,
    options: ProxyRequestOptions,
  ): Promise<Response> {
    conn.sawResponseBytes = false;
    const callerSignal = options.signal;
    let finished = false;
    let abortedWith: unknown;
    const onAbort = (event: Event) => {
      if (abortedWith !== undefined) return;
      const target = event.target instanceof AbortSignal ? event.target : request.signal;
      abortedWith = abortReason(target);
      conn.close();
    };
    // The caller's own signal is watched at once; the client's only if the head is slow.
    const pendingHead: PendingHead = {
      request,
      onAbort,
      seen: false,
      watching: false,
    };
    const idleTimeoutMs = options.idleTimeoutMs ?? 0;
    let idleTimer: ReturnType<typeof setTimeout> | undefined;
    const onIdleTimeout = () => {
      if (abortedWith !== undefined) return;
      abortedWith = new RuntimeError("IDLE_TIMEOUT", "request timed out");
      conn.close();
    };
    /** (Re)starts the idle clock; with `false`, stops it. */
    const idleClock = (running: boolean) => {
      if (idleTimeoutMs <= 0) return;
      clearTimeout(idleTimer);
      idleTimer = running ? setTimeout(onIdleTimeout, idleTimeoutMs) : undefined;
    };
    const finish = (reusable: boolean) => {
      if (finished) return;
      finished = true;
      idleClock(false);
      clientAbortWatch.delete(pendingHead);
      callerSignal?.removeEventListener("abort", onAbort);
      this.#release(conn, reusable && abortedWith === undefined);
      options.onDone?.();
    };
    callerSignal?.addEventListener("abort", onAbort);
    // A signal that fired while the connection was being opened has no event left to deliver.
    if (callerSignal?.aborted) {
      abortedWith = abortReason(callerSignal);
      finish(false);
      throw abortedWith;
    }
    clientAbortWatch.add(pendingHead);
    idleClock(true);

    let bodyPump: Promise<void> | undefined;
    let bodyWritten = request.body === null;
    let uploadRefused: PayloadTooLargeError | undefined;
    try {
      const head = requestHead(request, conn.headScratch);
      options.onRequestId?.(head.requestId);
      const written = await conn.conn.write(head.bytes);
      if (written < head.bytes.length) await conn.writeAll(head.bytes.subarray(written));
      if (request.body !== null) {
        bodyPump = pumpRequestBody(request.body, conn, head.chunked).then(() => {
          bodyWritten = true;
        });
        // A failed upload shows up as a broken response read; keep it from going unhandled.
        bodyPump.catch((error) => {
          if (error instanceof PayloadTooLargeError) uploadRefused = error;
          conn.close();
        });
      }
      let parsed: ParsedHead;
      do {
        const text = conn.takeHead() ?? await conn.readHead();
        if (text === null) {
          throw new RuntimeError("WORKER_CRASHED", "connection closed before message completed");
        }
        parsed = parseResponseHead(text, request.method);
      } while (parsed.status >= 100 && parsed.status < 200 && parsed.status !== 101);
      clientAbortWatch.delete(pendingHead);
      idleClock(false);
      if (parsed.status === 101 && head.websocket) {
        return this.#upgrade(request, conn, () => finish(false));
      }
      const { framing } = parsed;
      if (framing.kind === "none") {
        finish(parsed.keepAlive && bodyWritten);
        return buildResponse(null, parsed, false);
      }
      if (framing.kind === "length") {
        const view = conn.takeBufferedView(framing.length);
        if (view) {
          const body = ownedBody(view);
          finish(parsed.keepAlive && bodyWritten);
          return buildResponse(body, parsed, true);
        }
      }
      const body = this.#bodyStream(conn, framing, {
        done: () => finish(parsed.keepAlive && bodyWritten),
        abortedWith: () => abortedWith,
        idleClock,
      });
      return buildResponse(body, parsed, false);
    } catch (error) {
      finish(false);
      if (abortedWith !== undefined) throw abortedWith;
      if (uploadRefused !== undefined) throw uploadRefused;
      throw toRuntimeError(error);
    }
  }

  /**
   * The worker accepted a WebSocket upgrade: upgrade the client's side (on the request Deno.serve
   * gave the main service) and join the two until either closes. The connection leaves the pool.
   */
  #upgrade(request: Request, conn: BufferedConn, done: () => void): Response {
    let upgraded: { socket: WebSocket; response: Response };
    try {
      upgraded = Deno.upgradeWebSocket(originalRequestOf(request));
    } catch (error) {
      done();
      throw new RuntimeError(
        "BAD_RESPONSE",
        "the worker upgraded to WebSocket, but the client connection cannot be upgraded " +
          "(pass the request Deno.serve gave, or link a copy with EdgeRuntime.applySupabaseTag)",
        { cause: error },
      );
    }
    const leftover = conn.takeBufferedView(conn.buffered)?.slice() ?? new Uint8Array(0);
    relayWebSocket(upgraded.socket, conn, leftover).finally(done);
    return upgraded.response;
  }

  #bodyStream(
    conn: BufferedConn,
    framing: BodyFraming,
    hooks: {
      done: () => void;
      abortedWith: () => unknown;
      idleClock: (running: boolean) => void;
    },
  ) {
    const { done, abortedWith, idleClock } = hooks;
    let remaining = framing.kind === "length" ? framing.length : 0;
    let chunkLeft = 0;
    let ended = false;
    const end = (controller: ReadableStreamDefaultController<Uint8Array>) => {
      ended = true;
      done();
      controller.close();
    };
    const nextChunked = async (): Promise<Uint8Array | null> => {
      if (chunkLeft === 0) {
        const sizeLine = await conn.readLine();
        const size = parseInt(sizeLine, 16);
        if (!Number.isSafeInteger(size) || size < 0 || !/^[0-9a-fA-F]/.test(sizeLine)) {
          throw new RuntimeError("BAD_RESPONSE", "malformed chunk size");
        }
        if (size === 0) {
          while ((await conn.readLine()) !== "") { /* trailers are dropped */ }
          return null;
        }
        chunkLeft = size;
      }
      const piece = await conn.readSome(chunkLeft);
      if (piece === null) {
        throw new RuntimeError("WORKER_CRASHED", "connection closed before message completed");
      }
      chunkLeft -= piece.length;
      if (chunkLeft === 0) await conn.readLine();
      return piece;
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        idleClock(true);
        try {
          if (framing.kind === "length") {
            if (remaining === 0) return end(controller);
            const piece = await conn.readSome(remaining);
            if (piece === null) {
              throw new RuntimeError(
                "WORKER_CRASHED",
                "connection closed before message completed",
              );
            }
            remaining -= piece.length;
            controller.enqueue(piece);
            if (remaining === 0) end(controller);
          } else if (framing.kind === "chunked") {
            const piece = await nextChunked();
            if (piece === null) return end(controller);
            controller.enqueue(piece);
          } else {
            const piece = await conn.readSome(READ_CHUNK_BYTES);
            if (piece === null) return end(controller);
            controller.enqueue(piece);
          }
        } catch (error) {
          ended = true;
          conn.close();
          done();
          controller.error(abortedWith() ?? toRuntimeError(error));
        } finally {
          // The idle clock measures the worker's gaps, not a slow client's.
          idleClock(false);
        }
      },
      cancel: () => {
        if (ended) return;
        ended = true;
        conn.close();
        done();
      },
    });
  }
}
