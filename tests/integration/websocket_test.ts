/**
 * WebSocket upgrades through the built-in main service to a worker: 101, frames both ways (text,
 * binary, large), close codes, and the gateway-prefixed path.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, withRuntime } from "../test_utils.ts";

/** Opens a WebSocket and collects what it receives until it closes. */
function connect(url: string) {
  const socket = new WebSocket(url);
  socket.binaryType = "arraybuffer";
  const messages: (string | Uint8Array)[] = [];
  const waiters: (() => void)[] = [];
  socket.onmessage = (event) => {
    messages.push(typeof event.data === "string" ? event.data : new Uint8Array(event.data));
    waiters.splice(0).forEach((wake) => wake());
  };
  const opened = new Promise<void>((resolve, reject) => {
    socket.onopen = () => resolve();
    socket.onerror = (event) =>
      reject(new Error(`WebSocket error: ${(event as ErrorEvent).message}`));
  });
  const closed = new Promise<CloseEvent>((resolve) => socket.onclose = resolve);
  const nextMessage = async () => {
    while (messages.length === 0) await new Promise<void>((resolve) => waiters.push(resolve));
    return messages.shift()!;
  };
  return { socket, opened, closed, nextMessage };
}

Deno.test("WebSockets are relayed between the client and the worker", async (t) => {
  await withRuntime({ args: [`--functions=${FUNCTION_FIXTURES}`] }, async (rt) => {
    const wsUrl = rt.url.replace("http:", "ws:");

    await t.step("text and binary frames both ways, and the function's close code", async () => {
      const ws = connect(`${wsUrl}/websocket-echo/room`);
      await ws.opened;
      assert.equal(await ws.nextMessage(), "hello /websocket-echo/room");
      ws.socket.send("ping");
      assert.equal(await ws.nextMessage(), "echo: ping");
      ws.socket.send(new Uint8Array([0, 1, 2, 255]));
      assert.deepEqual(await ws.nextMessage(), new Uint8Array([0, 1, 2, 255]));
      ws.socket.send("big");
      assert.equal(await ws.nextMessage(), "x".repeat(200_000));
      ws.socket.send("close-me");
      const closed = await ws.closed;
      assert.equal(closed.code, 4001);
      assert.equal(closed.reason, "bye");
    });

    await t.step("through the /functions/v1 prefix the function sees its own path", async () => {
      const ws = connect(`${wsUrl}/functions/v1/websocket-echo/x`);
      await ws.opened;
      assert.equal(await ws.nextMessage(), "hello /websocket-echo/x");
      ws.socket.close(1000, "done");
      await ws.closed;
    });

    await t.step(
      "a client that closes first ends the worker's side; the worker keeps serving",
      async () => {
        const ws = connect(`${wsUrl}/websocket-echo`);
        await ws.opened;
        await ws.nextMessage();
        ws.socket.close(4002, "client leaves");
        await ws.closed;
        const plain = await fetchText(`${rt.url}/websocket-echo`);
        assert.deepEqual([plain.status, plain.body], [426, "expected a WebSocket upgrade"]);
      },
    );
  });
});
