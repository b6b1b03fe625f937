/**
 * The hot path: forwards a `Request` to a worker over its Unix socket as HTTP/1.1 and returns the
 * worker's `Response`, streaming both bodies with backpressure. Connections are kept alive and
 * reused. A plain `fetch` through `Deno.createHttpClient` reached about half the throughput of
 * this relay on our 2-core machine, which is why it is hand-written. The only module that opens
 * Unix-socket clients.
 */

import { PayloadTooLargeError, RuntimeError } from "./errors.ts";
import { clientAddressOf, originalRequestOf } from "./request_tags.ts";
import { relayWebSocket } from "./websocket_relay.ts";

/** Hop-by-hop headers (RFC 9110 §7.6.1) never forwarded in either direction. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);
const READ_CHUNK_BYTES = 64 * 1024;
const HEAD_SCRATCH_BYTES = 8 * 1024;
const MAX_HEAD_BYTES = 256 * 1024;
const CRLF = new Uint8Array([13, 10]);
const LAST_CHUNK = new TextEncoder().encode("0\r\n\r\n");
const encoder = new TextEncoder();

const utf8 = new TextDecoder();

/** Decodes bytes one-to-one into a string (header bytes are Latin-1, not UTF-8). */
function latin1(bytes: Uint8Array): string {
  // Fast path: for pure ASCII, UTF-8 decoding is one-to-one and much faster than fromCharCode.
  const fast = utf8.decode(bytes);
  if (fast.length === bytes.length && !fast.includes("\uFFFD")) return fast;
  let out = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    out += String.fromCharCode.apply(null, bytes.subarray(i, i + 8192) as unknown as number[]);
  }
  return out;
}

/** Encodes a string whose characters are all below 256 one byte each. */
function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

function isAscii(text: string): boolean {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 127) return false;
  return true;
}

/** One kept-alive connection with a read buffer. */
class BufferedConn {
  readonly conn: Deno.UnixConn;
  /** Where request heads are encoded; free again once they are written. */
  readonly headScratch = new Uint8Array(HEAD_SCRATCH_BYTES);
  #buf: Uint8Array<ArrayBuffer> = new Uint8Array(READ_CHUNK_BYTES);
  #start = 0;
  #end = 0;
  /** Offset up to which the buffer was searched for the end of a head. */
  #scanned = 0;
  #closed = false;
  /** True once a response byte was read on this connection during the current exchange. */
  sawResponseBytes = false;

  constructor(conn: Deno.UnixConn) {
    this.conn = conn;
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  get buffered(): number {
    return this.#end - this.#start;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.conn.close();
    } catch {
      // Already closed by the peer or by an abort: nothing left to release.
    }
  }

  async writeAll(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.conn.write(bytes.subarray(offset));
  }

  /** Reads more bytes into the buffer; false at end of stream. */
  async fill(): Promise<boolean> {
    if (this.#start === this.#end) this.#start = this.#end = this.#scanned = 0;
    if (this.#end === this.#buf.length) {
      const live = this.#end - this.#start;
      if (this.#start > 0) {
        this.#buf.copyWithin(0, this.#start, this.#end);
        this.#scanned -= this.#start;
      } else {
        if (this.#buf.length >= MAX_HEAD_BYTES) {
          throw new RuntimeError("BAD_RESPONSE", "response head is too large");
        }
        const bigger = new Uint8Array(this.#buf.length * 2);
        bigger.set(this.#buf);
        this.#buf = bigger;
      }
      this.#start = 0;
      this.#end = live;
    }
    const n = await this.conn.read(this.#buf.subarray(this.#end));
    if (n === null) return false;
    this.sawResponseBytes = true;
    this.#end += n;
    return true;
  }

  /**
   * Takes a complete head (through CRLF CRLF) from the buffer, or returns undefined when more
   * bytes are needed. Synchronous, so the common case costs no extra promise.
   */
  takeHead(): string | undefined {
    const buf = this.#buf;
    const end = this.#end;
    for (let i = Math.max(this.#start, this.#scanned - 3); i + 3 < end; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) {
        const head = latin1(buf.subarray(this.#start, i));
        this.#start = this.#scanned = i + 4;
        return head;
      }
    }
    this.#scanned = end;
    return undefined;
  }

  /** Reads through the next CRLF CRLF and returns the head text, or null at a clean EOF. */
  async readHead(): Promise<string | null> {
    let head = this.takeHead();
    while (head === undefined) {
      if (!(await this.fill())) {
        if (this.buffered === 0) return null;
        throw new RuntimeError("WORKER_CRASHED", "connection closed before message completed");
      }
      head = this.takeHead();
    }
    return head;
  }

  /** Reads one CRLF-terminated line (chunk sizes, trailers). */
  async readLine(): Promise<string> {
    while (true) {
      const buf = this.#buf;
      for (let i = this.#start; i + 1 < this.#end; i++) {
        if (buf[i] === 13 && buf[i + 1] === 10) {
          const line = latin1(buf.subarray(this.#start, i));
          this.#start = i + 2;
          return line;
        }
      }
      if (!(await this.fill())) {
        throw new RuntimeError("WORKER_CRASHED", "connection closed before message completed");
      }
    }
  }

  /** Returns up to `max` bytes (a fresh array the caller owns), or null at end of stream. */
  async readSome(max: number): Promise<Uint8Array | null> {
    if (this.buffered > 0) {
      const n = Math.min(max, this.buffered);
      const out = this.#buf.slice(this.#start, this.#start + n);
      this.#start += n;
      return out;
    }
    const out = new Uint8Array(Math.min(max, READ_CHUNK_BYTES));
    const n = await this.conn.read(out);
    if (n === null) return null;
    this.sawResponseBytes = true;
    return n === out.length ? out : out.subarray(0, n);
  }

  /**
   * Takes exactly `length` already-buffered bytes as a view into the connection's buffer (valid
   * only until the next read: copy or decode it at once), or undefined if fewer are buffered.
   */
  takeBufferedView(length: number): Uint8Array<ArrayBuffer> | undefined {
    if (this.buffered < length) return undefined;
    const out = this.#buf.subarray(this.#start, this.#start + length);
    this.#start += length;
    return out;
  }
}

/** How the response body is framed. */
type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

interface ParsedHead {
  status: number;
  /** The worker's reason phrase (Deno.serve sends the canonical one, as Supabase reports). */
  statusText: string;
  /** Header names and values, flattened: name, value, name, value... */
  headers: string[];
  framing: BodyFraming;
  keepAlive: boolean;
}

function parseResponseHead(head: string, method: string): ParsedHead {
  // "HTTP/1.x NNN reason", read by position: this runs for every response.
  const firstEnd = head.indexOf("\r\n");
  const statusLine = firstEnd === -1 ? head : head.slice(0, firstEnd);
  const minor = statusLine.charCodeAt(7);
  const status = Number(statusLine.slice(9, 12));
  if (
    !statusLine.startsWith("HTTP/1.") || (minor !== 48 && minor !== 49) ||
    statusLine.charCodeAt(8) !== 32 || !Number.isInteger(status) || status < 100 ||
    (statusLine.length > 12 && statusLine.charCodeAt(12) !== 32)
  ) {
    throw new RuntimeError("BAD_RESPONSE", "malformed response status line");
  }
  const statusText = statusLine.length > 13 ? statusLine.slice(13) : "";
  const headers: string[] = [];
  let contentLength: number | undefined;
  let chunked = false;
  let keepAlive = minor === 49;
  let lineStart = firstEnd === -1 ? head.length : firstEnd + 2;
  while (lineStart < head.length) {
    let lineEnd = head.indexOf("\r\n", lineStart);
    if (lineEnd === -1) lineEnd = head.length;
    const colon = head.indexOf(":", lineStart);
    if (colon <= lineStart || colon > lineEnd) {
      throw new RuntimeError("BAD_RESPONSE", "malformed response header line");
    }
    const name = head.slice(lineStart, colon).toLowerCase();
    const value = head.slice(colon + 1, lineEnd).trim();
    lineStart = lineEnd + 2;
    if (name === "content-length") {
      contentLength = Number(value);
      if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
        throw new RuntimeError("BAD_RESPONSE", "malformed content-length");
      }
    } else if (name === "transfer-encoding") {
      chunked = value.toLowerCase().split(",").map((s) => s.trim()).includes("chunked");
    } else if (name === "connection") {
      const tokens = value.toLowerCase().split(",").map((s) => s.trim());
      if (tokens.includes("close")) keepAlive = false;
      if (tokens.includes("keep-alive")) keepAlive = true;
    }
    if (HOP_BY_HOP.has(name)) continue;
    headers.push(name, value);
  }
  let framing: BodyFraming;
  if (method === "HEAD" || NULL_BODY_STATUSES.has(status) || (status >= 100 && status < 200)) {
    framing = NO_BODY;
  } else if (chunked) {
    framing = CHUNKED_BODY;
  } else if (contentLength !== undefined) {
    framing = { kind: "length", length: contentLength };
  } else {
    framing = CLOSE_DELIMITED_BODY;
    keepAlive = false;
  }
  return { status, statusText, headers, framing, keepAlive };
}

const NO_BODY: BodyFraming = { kind: "none" };
const CHUNKED_BODY: BodyFraming = { kind: "chunked" };
const CLOSE_DELIMITED_BODY: BodyFraming = { kind: "close" };

/**
 * Builds the relayed response. Headers are appended after construction: passing them in the
 * init costs several times more in Deno (the init copies them through the slow iterator).
 */
function buildResponse(
  body: BodyInit | null,
  head: ParsedHead,
  hasWholeBody: boolean,
): Response {
  const response = new Response(body, { status: head.status, statusText: head.statusText });
  const target = response.headers;
  const { headers } = head;
  // A string body makes the constructor add a text/plain content-type: the worker's one (or
  // none) must replace it, not join it.
  let contentTypeSeen = typeof body !== "string";
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    // With a whole body in hand, Deno.serve sets content-length itself.
    if (hasWholeBody && name === "content-length") continue;
    if (!contentTypeSeen && name === "content-type") {
      contentTypeSeen = true;
      target.set(name, headers[i + 1]);
      continue;
    }
    target.append(name, headers[i + 1]);
  }
  if (!contentTypeSeen) target.delete("content-type");
  return response;
}

/** Small bodies are relayed as strings when they are valid UTF-8 (cheaper than bytes in Deno). */
const STRING_BODY_MAX_BYTES = 16 * 1024;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/**
 * The body as a string when that round-trips byte for byte, else a copy of the bytes. `view`
 * points into a connection buffer, so nothing may keep it.
 */
function ownedBody(view: Uint8Array<ArrayBuffer>): string | Uint8Array<ArrayBuffer> {
  if (view.length <= STRING_BODY_MAX_BYTES) {
    try {
      return strictUtf8.decode(view);
    } catch {
      // Not UTF-8: relay the bytes.
    }
  }
  return view.slice();
}

/** The absolute URL without its fragment, and its `host[:port]`, read without `new URL()`. */
function splitTarget(url: string): { target: string; host: string } {
  const hash = url.indexOf("#");
  const target = hash === -1 ? url : url.slice(0, hash);
  const hostStart = target.indexOf("//") + 2;
  let hostEnd = hostStart;
  while (hostEnd < target.length) {
    const c = target.charCodeAt(hostEnd);
    if (c === 47 || c === 63) break; // "/" or "?"
    hostEnd++;
  }
  const host = target.slice(hostStart, hostEnd);
  const at = host.lastIndexOf("@");
  return { target, host: at === -1 ? host : host.slice(at + 1) };
}

/**
 * Serialises the request head into `scratch` when it fits (a fresh array otherwise); returns the
 * bytes and whether the body is sent chunked.
 */
function requestHead(
  request: Request,
  scratch: Uint8Array,
): { bytes: Uint8Array; chunked: boolean; websocket: boolean } {
  // Absolute-form target (RFC 9112 §3.2.2): the worker's `req.url` is then exactly the URL the
  // main service passed, scheme included, instead of being rebuilt from the socket.
  const { target, host } = splitTarget(request.url);
  let head = `${request.method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  let connectionListed: string | undefined;
  let upgrade: string | undefined;
  let forwardedFor: string | undefined;
  let forwardedProto = false;
  let hasLength = false;
  // forEach, not for-of: Deno's Headers iterator is several times slower. One pass; a
  // `Connection` header naming more hop-by-hop headers (rare) is handled after it.
  request.headers.forEach((value, name) => {
    if (name === "connection") connectionListed = value;
    else if (name === "upgrade") upgrade = value;
    else if (name === "x-forwarded-for") {
      forwardedFor = value; // re-added below with the client's address
      return;
    } else if (name === "x-forwarded-proto") forwardedProto = true;
    if (name === "host" || HOP_BY_HOP.has(name)) return;
    if (name === "content-length") hasLength = true;
    head += `${name}: ${value}\r\n`;
  });
  if (connectionListed !== undefined) {
    const dropped = new Set(connectionListed.toLowerCase().split(",").map((s) => s.trim()));
    head = head.split("\r\n").filter((line) => {
      const colon = line.indexOf(":");
      return colon === -1 || !dropped.has(line.slice(0, colon));
    }).join("\r\n");
  }
  const chunked = request.body !== null && !hasLength;
  if (chunked) head += "transfer-encoding: chunked\r\n";
  else if (
    request.body === null && !hasLength && request.method !== "GET" &&
    request.method !== "HEAD"
  ) head += "content-length: 0\r\n";
  // The one upgrade relayed: WebSocket (its Sec-WebSocket-* headers are end to end already).
  // The function learns who called (the client's address appended, as proxies do) and how.
  const client = clientAddressOf(request);
  if (client !== undefined) {
    head += `x-forwarded-for: ${forwardedFor ? `${forwardedFor}, ${client}` : client}\r\n`;
    if (!forwardedProto) {
      head += `x-forwarded-proto: ${target.startsWith("https:") ? "https" : "http"}\r\n`;
    }
  } else if (forwardedFor !== undefined) {
    head += `x-forwarded-for: ${forwardedFor}\r\n`;
  }
  // RFC 9110 §7.8: an upgrade is asked for only when Connection lists "upgrade".
  const websocket = upgrade?.toLowerCase() === "websocket" &&
    /(^|,)\s*upgrade\s*(,|$)/i.test(connectionListed ?? "");
  if (websocket) head += "connection: upgrade\r\nupgrade: websocket\r\n";
  head += "\r\n";
  if (!isAscii(head)) return { bytes: latin1Bytes(head), chunked, websocket };
  // encodeInto a reused buffer is several times cheaper than encode(), which allocates.
  if (head.length <= scratch.length) {
    return {
      bytes: scratch.subarray(0, encoder.encodeInto(head, scratch).written),
      chunked,
      websocket,
    };
  }
  return { bytes: encoder.encode(head), chunked, websocket };
}

async function pumpRequestBody(
  body: ReadableStream<Uint8Array>,
  conn: BufferedConn,
  chunked: boolean,
): Promise<void> {
  const reader = body.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      if (value.length === 0) continue;
      if (chunked) {
        await conn.writeAll(encoder.encode(value.length.toString(16) + "\r\n"));
        await conn.writeAll(value);
        await conn.writeAll(CRLF);
      } else {
        await conn.writeAll(value);
      }
    }
    if (chunked) await conn.writeAll(LAST_CHUNK);
  } catch (error) {
    await reader.cancel(error).catch(() => {});
    throw error;
  } finally {
    reader.releaseLock();
  }
}

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
}

/** Period of the sweep that starts watching clients' signals for slow response heads. */
const CLIENT_WATCH_PERIOD_MS = 20;

/** An exchange waiting for its response head, with the hook that aborts it. */
interface PendingHead {
  /** The client's request; its `signal` is read only once the head is late. */
  readonly request: Request;
  readonly onAbort: (event: Event) => void;
  /** Set by the first sweep that sees the head still pending; the next one starts watching. */
  seen: boolean;
  watching: boolean;
}

/**
 * Watches clients' `request.signal` only for exchanges whose response head is slow to come
 * (pending across two sweeps, so 20 to 40 ms). Reading `request.signal` of a `Deno.serve`
 * request makes Deno set up a cancellation watch for it, which cost a sizeable share of the
 * relay's throughput in our measurements; fast answers never need it, and a client that leaves
 * mid-body is seen through the body stream's `cancel()`. One shared timer runs while anything is
 * pending.
 */
class ClientAbortWatch {
  readonly #pending = new Set<PendingHead>();
  #timer: ReturnType<typeof setInterval> | undefined;

  add(head: PendingHead): void {
    this.#pending.add(head);
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(), CLIENT_WATCH_PERIOD_MS);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  delete(head: PendingHead): void {
    if (!this.#pending.delete(head)) return;
    if (head.watching) head.request.signal.removeEventListener("abort", head.onAbort);
    if (this.#pending.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #sweep(): void {
    for (const head of this.#pending) {
      if (head.watching) continue;
      if (!head.seen) {
        head.seen = true;
        continue;
      }
      head.watching = true;
      const { signal } = head.request;
      signal.addEventListener("abort", head.onAbort);
      if (signal.aborted) head.onAbort(new Event("abort"));
    }
  }
}

const clientAbortWatch = new ClientAbortWatch();

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
   * response head is late (see {@linkcode ClientAbortWatch}).
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
