/**
 * `--max-request-body-size`: bodies over the limit get 413 whether they declare a Content-Length
 * or stream without one; smaller ones pass untouched.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, withRuntime } from "../test_utils.ts";

function streamOf(size: number): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(controller) {
      if (sent >= size) return controller.close();
      const chunk = new Uint8Array(Math.min(256, size - sent)).fill(7);
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
}

Deno.test("--max-request-body-size answers 413 to larger bodies", async (t) => {
  const args = [`--functions=${FUNCTION_FIXTURES}`, "--max-request-body-size=1000"];
  await withRuntime({ args }, async (rt) => {
    const url = `${rt.url}/upload-digest`;
    await t.step("a declared Content-Length over the limit", async () => {
      const { status, body } = await fetchText(url, { method: "POST", body: "x".repeat(2000) });
      assert.equal(status, 413);
      assert.equal(JSON.parse(body).code, "PAYLOAD_TOO_LARGE");
    });
    await t.step("a streamed body that grows over the limit", async () => {
      const { status, body } = await fetchText(url, {
        method: "POST",
        body: streamOf(5000),
        duplex: "half",
      } as RequestInit);
      assert.equal(status, 413, body);
    });
    await t.step("bodies within the limit pass, declared or streamed", async () => {
      const declared = await fetchText(url, { method: "POST", body: "x".repeat(900) });
      assert.deepEqual([declared.status, JSON.parse(declared.body).length], [200, 900]);
      const streamed = await fetchText(url, {
        method: "POST",
        body: streamOf(900),
        duplex: "half",
      } as RequestInit);
      assert.deepEqual([streamed.status, JSON.parse(streamed.body).length], [200, 900]);
    });
  });
});
