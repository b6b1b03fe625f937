import assert from "node:assert/strict";
import { encodeFrame, FrameReader, type UpgradedConn } from "../../runtime/websocket_relay.ts";

/** A byte source that hands out `bytes` in chunks of `chunk`. */
function source(bytes: Uint8Array, chunk: number): UpgradedConn {
  let offset = 0;
  return {
    readSome: (max) => {
      if (offset >= bytes.length) return Promise.resolve(null);
      const end = Math.min(bytes.length, offset + Math.min(max, chunk));
      const out = bytes.slice(offset, end);
      offset = end;
      return Promise.resolve(out);
    },
    writeAll: () => Promise.resolve(),
    close() {},
  };
}

Deno.test("encodeFrame() and FrameReader round-trip masked frames of every length class", async (t) => {
  for (const length of [0, 5, 125, 126, 65535, 65536, 300_000]) {
    await t.step(`${length} bytes`, async () => {
      const payload = crypto.getRandomValues(new Uint8Array(Math.min(length, 65536)));
      const full = new Uint8Array(length);
      for (let i = 0; i < length; i += payload.length) full.set(payload.subarray(0, length - i), i);
      const frame = encodeFrame(2, full);
      assert.equal(frame[0], 0x82, "FIN and binary opcode");
      assert.ok(frame[1] & 0x80, "client frames are masked");
      const reader = new FrameReader(source(frame.subarray(3), 7000), frame.slice(0, 3));
      const read = await reader.next();
      assert.equal(read?.opcode, 2);
      assert.equal(read?.fin, true);
      assert.deepEqual(read?.payload, full);
      assert.equal(await reader.next(), null);
    });
  }
});

Deno.test("FrameReader reads unmasked server frames back to back", async () => {
  const bytes = new Uint8Array([0x01, 0x02, 0x68, 0x69, 0x80, 0x01, 0x21, 0x88, 0x02, 0x03, 0xe8]);
  const reader = new FrameReader(source(bytes, 1), new Uint8Array(0));
  const first = await reader.next();
  assert.deepEqual([first?.fin, first?.opcode, new TextDecoder().decode(first?.payload)], [
    false,
    1,
    "hi",
  ]);
  const second = await reader.next();
  assert.deepEqual([second?.fin, second?.opcode, second?.payload], [
    true,
    0,
    new Uint8Array([0x21]),
  ]);
  const close = await reader.next();
  assert.deepEqual([close?.opcode, close?.payload], [8, new Uint8Array([0x03, 0xe8])]);
  assert.equal(await reader.next(), null);
});
