/**
 * Unit tests for `runtime/serve_capture.ts`: reading the forms of a `Deno.serve` call and finding a
 * default-export handler. `installServeCapture()` replaces `Deno.serve` globally, so its test
 * restores the original in `finally`.
 */

import assert from "node:assert/strict";
import {
  defaultExportHandler,
  installServeCapture,
  readServeArgs,
} from "../../runtime/serve_capture.ts";

const INFO: Deno.ServeHandlerInfo<Deno.Addr> = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 1234 },
  completed: Promise.resolve(),
};

function handler(_request: Request): Response {
  return new Response("ok");
}

function onListen(_addr: Deno.NetAddr): void {}

function onError(_error: unknown): Response {
  return new Response("error", { status: 500 });
}

Deno.test("readServeArgs() reads (handler)", () => {
  assert.deepEqual(readServeArgs([handler]), {
    handler,
    onListen: undefined,
    onError: undefined,
    port: undefined,
  });
});

Deno.test("readServeArgs() reads (options, handler)", () => {
  assert.deepEqual(readServeArgs([{ port: 8080, onListen, onError }, handler]), {
    handler,
    onListen,
    onError,
    port: 8080,
  });
});

Deno.test("readServeArgs() reads ({ handler, port, onListen, onError })", () => {
  assert.deepEqual(readServeArgs([{ handler, port: 3000, onListen, onError }]), {
    handler,
    onListen,
    onError,
    port: 3000,
  });
});

Deno.test("readServeArgs() prefers the second argument over options.handler", () => {
  function other(): Response {
    return new Response("other");
  }
  assert.equal(readServeArgs([{ handler: other }, handler])?.handler, handler);
});

Deno.test("readServeArgs() ignores options of the wrong type", () => {
  assert.deepEqual(
    readServeArgs([{ port: "8080", onListen: "no", onError: 1 }, handler]),
    { handler, onListen: undefined, onError: undefined, port: undefined },
  );
});

Deno.test("readServeArgs() returns undefined when no handler is given", async (t) => {
  const cases: Record<string, unknown[]> = {
    "no arguments": [],
    "options only": [{ port: 8000 }],
    "null": [null],
    "a string": ["handler"],
    "handler not a function": [{ handler: "nope" }],
    "options and a non-function": [{ port: 1 }, { fetch: handler }],
  };
  for (const [name, args] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(readServeArgs(args), undefined);
    });
  }
});

Deno.test("defaultExportHandler() calls default.fetch with this bound to the export", async () => {
  const exported = {
    greeting: "hi",
    fetch(this: { greeting: string }, request: Request, info: Deno.ServeHandlerInfo) {
      return new Response(`${this.greeting} ${new URL(request.url).pathname} ${info.remoteAddr}`);
    },
  };
  const found = defaultExportHandler({ default: exported });
  assert.ok(found);
  const response = await found(new Request("http://localhost/hello"), {
    ...INFO,
    remoteAddr: "addr" as unknown as Deno.Addr,
  });
  assert.equal(await response.text(), "hi /hello addr");
});

Deno.test("defaultExportHandler() passes through an async fetch", async () => {
  const found = defaultExportHandler({
    default: { fetch: (request: Request) => Promise.resolve(new Response(request.method)) },
  });
  assert.ok(found);
  const response = await found(new Request("http://localhost/", { method: "PUT" }), INFO);
  assert.equal(await response.text(), "PUT");
});

Deno.test("defaultExportHandler() returns undefined for modules without one", async (t) => {
  const cases: Record<string, Record<string, unknown>> = {
    "no default export": { fetch: handler },
    "null default": { default: null },
    "function default": { default: handler },
    "string default": { default: "fetch" },
    "default without fetch": { default: { handler } },
    "fetch not a function": { default: { fetch: "nope" } },
  };
  for (const [name, module] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(defaultExportHandler(module), undefined);
    });
  }
});

Deno.test("installServeCapture() records the handler instead of serving", async () => {
  const realServe = Deno.serve;
  const original = Object.getOwnPropertyDescriptor(Deno, "serve");
  assert.ok(original);
  try {
    const capture = installServeCapture();
    const before: unknown = capture.current;
    assert.equal(before, undefined);
    const serve = Deno.serve as unknown as (...args: unknown[]) => Deno.HttpServer;
    const server = serve({ port: 4321, onListen }, handler);
    assert.equal(capture.current?.handler, handler);
    assert.equal(capture.current?.onListen, onListen);
    assert.deepEqual(server.addr, { transport: "tcp", hostname: "0.0.0.0", port: 4321 });
    assert.throws(() => serve({ port: 1 }), TypeError);
    assert.equal(capture.current?.handler, handler, "a failed call keeps the last capture");
    let finished = false;
    const done = server.finished.then(() => finished = true);
    await Promise.resolve();
    assert.equal(finished, false);
    capture.finish();
    await done;
    assert.equal(finished, true);
    await server.shutdown();
  } finally {
    Object.defineProperty(Deno, "serve", original);
  }
  assert.equal(Deno.serve, realServe);
});
