/**
 * HTTP/1.1 on the wire between the main runtime and a worker: a buffered connection, request heads
 * out, response heads in, body framing, and the relayed Response. No sockets are opened here.
 */

import { RuntimeError } from "./errors.ts";
import { clientAddressOf } from "./request_tags.ts";

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
export const READ_CHUNK_BYTES = 64 * 1024;
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
export class BufferedConn {
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
export type BodyFraming =
  | { kind: "none" }
  | { kind: "length"; length: number }
  | { kind: "chunked" }
  | { kind: "close" };

export interface ParsedHead {
  status: number;
  /** The worker's reason phrase (Deno.serve sends the canonical one, as Supabase reports). */
  statusText: string;
  /** Header names and values, flattened: name, value, name, value... */
  headers: string[];
  framing: BodyFraming;
  keepAlive: boolean;
}

export function parseResponseHead(head: string, method: string): ParsedHead {
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
export function buildResponse(
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
export function ownedBody(view: Uint8Array<ArrayBuffer>): string | Uint8Array<ArrayBuffer> {
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
export function requestHead(
  request: Request,
  scratch: Uint8Array,
): { bytes: Uint8Array; chunked: boolean; websocket: boolean; requestId: string } {
  // Absolute-form target (RFC 9112 §3.2.2): the worker's `req.url` is then exactly the URL the
  // main service passed, scheme included, instead of being rebuilt from the socket.
  const { target, host } = splitTarget(request.url);
  let head = `${request.method} ${target} HTTP/1.1\r\nhost: ${host}\r\n`;
  let connectionListed: string | undefined;
  let upgrade: string | undefined;
  let forwardedFor: string | undefined;
  let forwardedProto = false;
  let requestId: string | undefined;
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
    else if (name === "x-request-id") requestId = value;
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
  // Every request carries an id the function (and the logs) can quote; one is made when absent.
  if (requestId === undefined) {
    requestId = crypto.randomUUID();
    head += `x-request-id: ${requestId}\r\n`;
  }
  // RFC 9110 §7.8: an upgrade is asked for only when Connection lists "upgrade".
  const websocket = upgrade?.toLowerCase() === "websocket" &&
    /(^|,)\s*upgrade\s*(,|$)/i.test(connectionListed ?? "");
  if (websocket) head += "connection: upgrade\r\nupgrade: websocket\r\n";
  head += "\r\n";
  if (!isAscii(head)) return { bytes: latin1Bytes(head), chunked, websocket, requestId };
  // encodeInto a reused buffer is several times cheaper than encode(), which allocates.
  if (head.length <= scratch.length) {
    return {
      bytes: scratch.subarray(0, encoder.encodeInto(head, scratch).written),
      chunked,
      websocket,
      requestId,
    };
  }
  return { bytes: encoder.encode(head), chunked, websocket, requestId };
}

export async function pumpRequestBody(
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
