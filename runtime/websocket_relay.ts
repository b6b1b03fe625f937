/**
 * WebSocket relay: after the worker answered an upgrade with 101, the client's socket (from
 * `Deno.upgradeWebSocket` on the main runtime's request) and the worker's connection are joined
 * message by message. The worker side is spoken as a WebSocket client (RFC 6455: masked frames
 * out, fragments reassembled, pings answered) over the Unix-socket connection.
 */

/** The connection to the worker after its 101, with the bytes already read past the head. */
export interface UpgradedConn {
  /** Reads up to `max` bytes; null at end of stream. */
  readSome(max: number): Promise<Uint8Array | null>;
  writeAll(bytes: Uint8Array): Promise<void>;
  close(): void;
}

const OPCODE = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;
/** Largest message relayed; a worker sending more is cut off (close 1009). */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Builds one masked (client-to-server) frame. */
export function encodeFrame(opcode: number, payload: Uint8Array): Uint8Array {
  const length = payload.length;
  const extended = length < 126 ? 0 : length <= 0xffff ? 2 : 8;
  const frame = new Uint8Array(2 + extended + 4 + length);
  frame[0] = 0x80 | opcode;
  frame[1] = 0x80 | (extended === 0 ? length : extended === 2 ? 126 : 127);
  const view = new DataView(frame.buffer);
  if (extended === 2) view.setUint16(2, length);
  if (extended === 8) view.setBigUint64(2, BigInt(length));
  const maskAt = 2 + extended;
  const mask = crypto.getRandomValues(new Uint8Array(4));
  frame.set(mask, maskAt);
  for (let i = 0; i < length; i++) frame[maskAt + 4 + i] = payload[i] ^ mask[i & 3];
  return frame;
}

/** One frame as read from the worker. */
export interface Frame {
  fin: boolean;
  opcode: number;
  payload: Uint8Array;
}

/** Reads frames from a byte source. */
export class FrameReader {
  #source: UpgradedConn;
  #buffer: Uint8Array = new Uint8Array(0);

  constructor(source: UpgradedConn, leftover: Uint8Array) {
    this.#source = source;
    this.#buffer = leftover;
  }

  async #need(count: number): Promise<boolean> {
    while (this.#buffer.length < count) {
      const more = await this.#source.readSome(64 * 1024);
      if (more === null) return false;
      const joined = new Uint8Array(this.#buffer.length + more.length);
      joined.set(this.#buffer);
      joined.set(more, this.#buffer.length);
      this.#buffer = joined;
    }
    return true;
  }

  #take(count: number): Uint8Array {
    const out = this.#buffer.slice(0, count);
    this.#buffer = this.#buffer.subarray(count);
    return out;
  }

  /** The next frame, or null at end of stream. */
  async next(): Promise<Frame | null> {
    if (!(await this.#need(2))) return null;
    const [b0, b1] = this.#take(2);
    let length = b1 & 0x7f;
    if (length === 126) {
      if (!(await this.#need(2))) return null;
      const bytes = this.#take(2);
      length = (bytes[0] << 8) | bytes[1];
    } else if (length === 127) {
      if (!(await this.#need(8))) return null;
      length = Number(new DataView(this.#take(8).buffer).getBigUint64(0));
    }
    if (length > MAX_MESSAGE_BYTES) throw new RangeError("WebSocket frame too large");
    let mask: Uint8Array | undefined;
    if (b1 & 0x80) {
      if (!(await this.#need(4))) return null;
      mask = this.#take(4);
    }
    if (!(await this.#need(length))) return null;
    const payload = this.#take(length);
    if (mask) { for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i & 3]; }
    return { fin: (b0 & 0x80) !== 0, opcode: b0 & 0x0f, payload };
  }
}

/** Close codes a peer may send (RFC 6455 §7.4); anything else is replaced by 1000. */
function sendableCloseCode(code: number): number | undefined {
  if (code === 1000 || (code >= 3000 && code <= 4999)) return code;
  if (code >= 1001 && code <= 1014 && ![1004, 1005, 1006].includes(code)) return code;
  return undefined;
}

function closePayload(code: number, reason: string): Uint8Array {
  const text = encoder.encode(reason).slice(0, 123);
  const payload = new Uint8Array(2 + text.length);
  new DataView(payload.buffer).setUint16(0, code);
  payload.set(text, 2);
  return payload;
}

/**
 * Joins `client` (already upgraded, not necessarily open yet) and the worker connection until
 * either side closes. Resolves when both are done.
 */
export async function relayWebSocket(
  client: WebSocket,
  worker: UpgradedConn,
  leftover: Uint8Array,
): Promise<void> {
  client.binaryType = "arraybuffer";
  let workerClosed = false;
  const sendToWorker = (opcode: number, payload: Uint8Array) => {
    if (workerClosed) return;
    worker.writeAll(encodeFrame(opcode, payload)).catch(() => {
      workerClosed = true;
      worker.close();
    });
  };
  const closeWorker = (code: number, reason: string) => {
    if (workerClosed) return;
    sendToWorker(OPCODE.close, closePayload(sendableCloseCode(code) ?? 1000, reason));
    workerClosed = true;
    // Give the close frame a moment to leave before the connection goes.
    setTimeout(() => worker.close(), 100);
  };
  const opened = new Promise<void>((resolve) => {
    if (client.readyState === WebSocket.OPEN) resolve();
    client.addEventListener("open", () => resolve(), { once: true });
    client.addEventListener("close", () => resolve(), { once: true });
  });
  client.addEventListener("message", (event) => {
    const data = event.data;
    if (typeof data === "string") sendToWorker(OPCODE.text, encoder.encode(data));
    else sendToWorker(OPCODE.binary, new Uint8Array(data as ArrayBuffer));
  });
  client.addEventListener("close", (event) => closeWorker(event.code, event.reason));
  const closeClient = (code: number, reason: string) => {
    if (client.readyState === WebSocket.CLOSING || client.readyState === WebSocket.CLOSED) return;
    const sendable = sendableCloseCode(code);
    if (sendable === undefined) client.close();
    else client.close(sendable, reason);
  };

  const reader = new FrameReader(worker, leftover);
  const fragments: Uint8Array[] = [];
  let fragmentOpcode = 0;
  await opened;
  try {
    while (true) {
      const frame = await reader.next();
      if (frame === null) break;
      const { opcode, payload, fin } = frame;
      if (opcode === OPCODE.ping) {
        sendToWorker(OPCODE.pong, payload);
        continue;
      }
      if (opcode === OPCODE.pong) continue;
      if (opcode === OPCODE.close) {
        const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
        const code = payload.length >= 2 ? view.getUint16(0) : 1000;
        const reason = payload.length > 2 ? decoder.decode(payload.subarray(2)) : "";
        closeWorker(code, reason);
        closeClient(code, reason);
        return;
      }
      if (opcode !== OPCODE.continuation) fragmentOpcode = opcode;
      fragments.push(payload);
      if (!fin) continue;
      const message = fragments.length === 1 ? fragments[0] : concat(fragments);
      fragments.length = 0;
      if (client.readyState !== WebSocket.OPEN) break;
      if (fragmentOpcode === OPCODE.text) client.send(decoder.decode(message));
      else client.send(message);
    }
    closeClient(1006, "");
  } catch {
    closeClient(1011, "worker connection failed");
  } finally {
    workerClosed = true;
    worker.close();
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
