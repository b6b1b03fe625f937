/**
 * Unit tests for `runtime/proxy.ts`: the HTTP/1.1 relay to a worker's Unix socket. Well-behaved
 * workers are real `Deno.serve` servers on a socket in a temporary directory; misbehaving ones are
 * raw `Deno.listen` servers that write exactly the bytes under test.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { RuntimeError, type RuntimeErrorCode } from "../../runtime/errors.ts";
import { UnixHttpClient } from "../../runtime/proxy.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

// --- helpers ------------------------------------------------------------------------------------

interface TempSocket extends AsyncDisposable {
  path: string;
}

/** A socket path in a fresh temporary directory, removed on dispose. */
async function tempSocket(): Promise<TempSocket> {
  const dir = await Deno.makeTempDir({ prefix: "proxy_test_" });
  return {
    path: join(dir, "worker.sock"),
    async [Symbol.asyncDispose]() {
      await Deno.remove(dir, { recursive: true });
    },
  };
}

/** A real HTTP server on `path` (a well-behaved worker). */
function serveOn(
  path: string,
  handler: (request: Request) => Response | Promise<Response>,
): Deno.HttpServer<Deno.UnixAddr> {
  return Deno.serve({ path, transport: "unix", onListen() {} }, handler);
}

/** A client closed on dispose. */
function clientFor(path: string): UnixHttpClient & Disposable {
  const client = new UnixHttpClient(path);
  return Object.assign(client, {
    [Symbol.dispose]() {
      client.close();
    },
  });
}

/** Rejects when `promise` has not settled after `ms` (a guard against hangs, not a sleep). */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`Timed out waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

async function sha256Hex(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomBytes(length: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
  return bytes;
}

/** A stream of `bytes` in odd-sized slices, so chunk boundaries never line up with anything. */
function sliceStream(bytes: Uint8Array, size = 100_003): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      if (offset >= bytes.length) return controller.close();
      controller.enqueue(bytes.slice(offset, offset + size));
      offset += size;
    },
  });
}

function isRuntimeError(code: RuntimeErrorCode) {
  return (error: unknown) => {
    assert.ok(error instanceof RuntimeError, `expected a RuntimeError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  };
}

function isAbortError(error: unknown): boolean {
  assert.ok(error instanceof DOMException, `expected a DOMException, got ${String(error)}`);
  assert.equal(error.name, "AbortError");
  assert.equal(error.message, "The signal has been aborted");
  return true;
}

/** One accepted connection of a raw server, with a read buffer. */
class RawConn {
  readonly #conn: Deno.Conn;
  #buf = new Uint8Array(0);

  constructor(conn: Deno.Conn) {
    this.#conn = conn;
  }

  /** Reads one request head (through CRLF CRLF), or null when the client closed. */
  async readHead(): Promise<string | null> {
    while (true) {
      const text = decoder.decode(this.#buf);
      const end = text.indexOf("\r\n\r\n");
      if (end !== -1) {
        this.#buf = this.#buf.slice(encoder.encode(text.slice(0, end + 4)).length);
        return text.slice(0, end);
      }
      const chunk = new Uint8Array(16 * 1024);
      const n = await this.#conn.read(chunk).catch(() => null);
      if (n === null) return null;
      const grown = new Uint8Array(this.#buf.length + n);
      grown.set(this.#buf);
      grown.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = grown;
    }
  }

  async write(data: string): Promise<void> {
    const bytes = encoder.encode(data);
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  close(): void {
    try {
      this.#conn.close();
    } catch {
      // Already closed.
    }
  }
}

interface RawServer extends AsyncDisposable {
  /** How many connections were accepted so far. */
  readonly accepted: number;
  /** The request heads read so far, in order. */
  readonly heads: string[];
}

/**
 * A raw Unix-socket server that handles one connection at a time with `handle` and closes it
 * afterwards. Closed on dispose.
 */
function rawServer(
  path: string,
  handle: (conn: RawConn, index: number, heads: string[]) => Promise<void>,
): RawServer {
  const listener = Deno.listen({ transport: "unix", path });
  let accepted = 0;
  const heads: string[] = [];
  const done = (async () => {
    for await (const conn of listener) {
      const raw = new RawConn(conn);
      try {
        await handle(raw, accepted++, heads);
      } catch {
        // The client may go away first; what it saw is what the test checks.
      } finally {
        raw.close();
      }
    }
  })();
  return {
    get accepted() {
      return accepted;
    },
    heads,
    async [Symbol.asyncDispose]() {
      listener.close();
      await done;
    },
  };
}

/** A raw handler that reads one request head and writes `response` as given. */
function answerOnce(response: string) {
  return async (conn: RawConn, _index: number, heads: string[]) => {
    const head = await conn.readHead();
    if (head === null) return;
    heads.push(head);
    await conn.write(response);
  };
}

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string>;
}

function echoHandler(request: Request): Response {
  return Response.json(
    {
      method: request.method,
      url: request.url,
      headers: Object.fromEntries(request.headers),
    } satisfies Echo,
  );
}

// --- well-behaved worker ------------------------------------------------------------------------

Deno.test("UnixHttpClient.request() forwards method, query and repeated headers", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, echoHandler);
  using client = clientFor(socket.path);
  const headers = new Headers();
  headers.append("x-multi", "a");
  headers.append("x-multi", "b");
  headers.set("x-one", "1");
  headers.set("accept", "application/json");
  const response = await client.request(
    new Request("http://localhost/hello/path?a=1&b=two%20words&a=3", { headers }),
  );
  assert.equal(response.status, 200);
  const echo: Echo = await response.json();
  assert.equal(echo.method, "GET");
  assert.equal(echo.url, "http://localhost/hello/path?a=1&b=two%20words&a=3");
  assert.equal(echo.headers["x-multi"], "a, b");
  assert.equal(echo.headers["x-one"], "1");
  assert.equal(echo.headers["accept"], "application/json");
  assert.equal(echo.headers["host"], "localhost");
});

Deno.test("UnixHttpClient.request() lets the worker see the absolute URL unchanged", async (t) => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, echoHandler);
  using client = clientFor(socket.path);
  const urls = [
    "http://localhost/hello",
    "http://fn.internal:8080/hello/x?y=1",
    "https://project.supabase.co/functions/v1/hello?q=%2F",
    "http://127.0.0.1:54321/a/b/",
  ];
  for (const url of urls) {
    await t.step(url, async () => {
      const echo: Echo = await (await client.request(new Request(url))).json();
      assert.equal(echo.url, url);
      assert.equal(echo.headers.host, new URL(url).host);
    });
  }
});

Deno.test("UnixHttpClient.request() forwards the methods and a small body", async (t) => {
  await using socket = await tempSocket();
  await using _server = serveOn(
    socket.path,
    async (request) => new Response(`${request.method} ${await request.text()}`),
  );
  using client = clientFor(socket.path);
  for (const method of ["POST", "PUT", "PATCH", "DELETE"]) {
    await t.step(method, async () => {
      const response = await client.request(
        new Request("http://localhost/", { method, body: `${method.toLowerCase()} body` }),
      );
      assert.equal(await response.text(), `${method} ${method.toLowerCase()} body`);
    });
  }
  await t.step("POST without a body", async () => {
    const response = await client.request(new Request("http://localhost/", { method: "POST" }));
    assert.equal(await response.text(), "POST ");
  });
  assert.equal(client.connectionCount, 1);
});

Deno.test("UnixHttpClient.request() streams a 3 MB request body intact", async (t) => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, async (request) => {
    const bytes = new Uint8Array(await request.arrayBuffer());
    return Response.json({
      length: bytes.length,
      digest: await sha256Hex(bytes),
      contentLength: request.headers.get("content-length"),
    });
  });
  using client = clientFor(socket.path);
  const payload = randomBytes(3 * 1024 * 1024 + 17);
  const expected = await sha256Hex(payload);
  for (const withLength of [false, true]) {
    await t.step(withLength ? "with content-length" : "chunked", async () => {
      const headers: HeadersInit = withLength ? { "content-length": String(payload.length) } : {};
      const response = await client.request(
        new Request("http://localhost/upload", {
          method: "POST",
          body: sliceStream(payload),
          headers,
          duplex: "half",
        } as RequestInit),
      );
      const result = await response.json();
      assert.equal(result.length, payload.length);
      assert.equal(result.digest, expected);
      assert.equal(result.contentLength, withLength ? String(payload.length) : null);
    });
  }
  assert.equal(client.connectionCount, 1, "both uploads used one kept-alive connection");
});

Deno.test("UnixHttpClient.request() keeps two set-cookie headers separate", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, () => {
    const headers = new Headers();
    headers.append("set-cookie", "a=1; Path=/; HttpOnly");
    headers.append("set-cookie", "b=2, with comma; Secure");
    headers.append("x-multi", "x");
    headers.append("x-multi", "y");
    return new Response("ok", { headers });
  });
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://localhost/"));
  await response.body?.cancel();
  assert.deepEqual(response.headers.getSetCookie(), [
    "a=1; Path=/; HttpOnly",
    "b=2, with comma; Secure",
  ]);
  assert.equal(response.headers.get("x-multi"), "x, y");
});

Deno.test("UnixHttpClient.request() gives a null body for 204, 304 and HEAD", async (t) => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/204") return new Response(null, { status: 204 });
    if (path === "/304") return new Response(null, { status: 304, headers: { etag: '"v1"' } });
    return new Response("hello body", { headers: { "content-type": "text/plain" } });
  });
  using client = clientFor(socket.path);
  const cases = [
    { name: "204", method: "GET", path: "/204", status: 204 },
    { name: "304", method: "GET", path: "/304", status: 304 },
    { name: "HEAD", method: "HEAD", path: "/page", status: 200 },
  ];
  for (const { name, method, path, status } of cases) {
    await t.step(name, async () => {
      const response = await client.request(new Request(`http://localhost${path}`, { method }));
      assert.equal(response.status, status);
      assert.equal(response.body, null);
    });
  }
  await t.step("the connection is still usable afterwards", async () => {
    const response = await client.request(new Request("http://localhost/page"));
    assert.equal(await response.text(), "hello body");
    assert.equal(client.connectionCount, 1);
  });
});

Deno.test("UnixHttpClient.request() streams the response before the worker finished it", async () => {
  await using socket = await tempSocket();
  const release = deferred();
  await using _server = serveOn(socket.path, () => {
    let step = 0;
    return new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (step++ === 0) {
            controller.enqueue(encoder.encode("first "));
            return;
          }
          await release.promise;
          controller.enqueue(encoder.encode("last"));
          controller.close();
        },
      }),
    );
  });
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://localhost/stream"));
  assert.ok(response.body);
  const reader = response.body.getReader();
  const first = await within(reader.read(), 2000, "the first chunk");
  assert.equal(decoder.decode(first.value), "first ");
  release.resolve();
  let rest = "";
  while (true) {
    const { value, done } = await within(reader.read(), 2000, "the rest of the body");
    if (done) break;
    rest += decoder.decode(value, { stream: true });
  }
  assert.equal(rest, "last");
});

Deno.test("UnixHttpClient.request() reuses one connection for sequential requests", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, async (request) => {
    const body = request.body ? await request.text() : "";
    return new Response(`${new URL(request.url).pathname}${body}`);
  });
  using client = clientFor(socket.path);
  for (let i = 0; i < 20; i++) {
    const request = i % 5 === 4
      ? new Request(`http://localhost/${i}`, { method: "POST", body: ":posted" })
      : new Request(`http://localhost/${i}`);
    const response = await client.request(request);
    assert.equal(await response.text(), i % 5 === 4 ? `/${i}:posted` : `/${i}`);
    assert.equal(client.connectionCount, 1, `request ${i} opened another connection`);
  }
});

Deno.test("UnixHttpClient.request() opens a connection per concurrent request", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(
    socket.path,
    (request) => new Response(new URL(request.url).pathname),
  );
  using client = clientFor(socket.path);
  const responses = await Promise.all(
    [1, 2, 3].map((i) => client.request(new Request(`http://localhost/${i}`))),
  );
  assert.equal(client.connectionCount, 3);
  assert.deepEqual(await Promise.all(responses.map((r) => r.text())), ["/1", "/2", "/3"]);
  const again = await client.request(new Request("http://localhost/again"));
  assert.equal(await again.text(), "/again");
  assert.equal(client.connectionCount, 3, "an idle connection was reused");
});

Deno.test("UnixHttpClient.request() rejects with AbortError on an already-aborted signal", async () => {
  await using socket = await tempSocket();
  let hits = 0;
  await using _server = serveOn(socket.path, () => {
    hits++;
    return new Response("should not happen");
  });
  using client = clientFor(socket.path);
  await assert.rejects(
    client.request(new Request("http://localhost/"), { signal: AbortSignal.abort() }),
    isAbortError,
  );
  assert.equal(client.connectionCount, 0);
  assert.equal(hits, 0);
});

// The client's signal (`request.signal`) is read only once a response head is late: reading it on
// a Deno.serve request costs about a fifth of the relay's throughput. So a Request whose own signal
// is already aborted is cancelled as soon as its head is late, not before it is sent; the caller's
// `options.signal` is checked up front (test above).
Deno.test({
  name: "UnixHttpClient.request() rejects with AbortError when the request's signal is aborted",
  fn: async () => {
    await using socket = await tempSocket();
    const release = deferred();
    await using _server = serveOn(socket.path, async () => {
      await release.promise;
      return new Response("too late");
    });
    using client = clientFor(socket.path);
    const request = new Request("http://localhost/", { signal: AbortSignal.abort() });
    await assert.rejects(client.request(request), isAbortError);
    assert.equal(client.connectionCount, 0, "the aborted exchange's connection was dropped");
    release.resolve();
  },
});

// Regression: the "abort" listeners were added only after the connection was open, so a signal
// aborted while connecting was never seen and the request went through.
Deno.test({
  name: "UnixHttpClient.request() rejects with AbortError when aborted while connecting",
  fn: async () => {
    await using socket = await tempSocket();
    await using _server = serveOn(socket.path, () => new Response("should not happen"));
    using client = clientFor(socket.path);
    const controller = new AbortController();
    const pending = client.request(new Request("http://localhost/"), {
      signal: controller.signal,
    });
    controller.abort();
    await assert.rejects(pending, isAbortError);
  },
});

Deno.test("UnixHttpClient.request() rejects with AbortError when aborted before the response head", async () => {
  await using socket = await tempSocket();
  const arrived = deferred();
  const release = deferred();
  await using _server = serveOn(socket.path, async () => {
    arrived.resolve();
    await release.promise;
    return new Response("late");
  });
  using client = clientFor(socket.path);
  const controller = new AbortController();
  const pending = client.request(new Request("http://localhost/"), { signal: controller.signal });
  await within(arrived.promise, 2000, "the request to arrive");
  controller.abort();
  await assert.rejects(pending, isAbortError);
  assert.equal(client.connectionCount, 0);
  release.resolve();
});

Deno.test("UnixHttpClient.request() cancels the worker's stream when aborted mid-body", async () => {
  await using socket = await tempSocket();
  const cancelled = deferred<unknown>();
  await using _server = serveOn(socket.path, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          controller.enqueue(encoder.encode("chunk"));
          await cancelled.promise;
        },
        cancel(reason) {
          cancelled.resolve(reason);
        },
      }),
    ));
  using client = clientFor(socket.path);
  const controller = new AbortController();
  let done = false;
  const response = await client.request(new Request("http://localhost/"), {
    signal: controller.signal,
    onDone: () => done = true,
  });
  assert.ok(response.body);
  const reader = response.body.getReader();
  const first = await within(reader.read(), 2000, "the first chunk");
  assert.equal(decoder.decode(first.value), "chunk");
  controller.abort();
  await within(cancelled.promise, 2000, "the worker's stream to be cancelled");
  await reader.read().catch(() => {});
  await reader.cancel().catch(() => {});
  assert.equal(done, true, "onDone ran");
  assert.equal(client.connectionCount, 0, "the aborted connection was dropped");
});

// Regression: an abort mid-body used to surface as WORKER_CRASHED instead of the abort reason.
Deno.test({
  name: "UnixHttpClient.request() errors the body with the abort reason when aborted mid-body",
  fn: async () => {
    await using socket = await tempSocket();
    const cancelled = deferred<unknown>();
    await using _server = serveOn(socket.path, () =>
      new Response(
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            controller.enqueue(encoder.encode("chunk"));
            await cancelled.promise;
          },
          cancel(reason) {
            cancelled.resolve(reason);
          },
        }),
      ));
    using client = clientFor(socket.path);
    const controller = new AbortController();
    const response = await client.request(new Request("http://localhost/"), {
      signal: controller.signal,
    });
    assert.ok(response.body);
    const reader = response.body.getReader();
    await within(reader.read(), 2000, "the first chunk");
    controller.abort();
    await within(cancelled.promise, 2000, "the worker's stream to be cancelled");
    await assert.rejects(reader.read(), isAbortError);
  },
});

Deno.test("UnixHttpClient.request() cancels the worker's stream when the body is cancelled", async () => {
  await using socket = await tempSocket();
  const cancelled = deferred<unknown>();
  await using _server = serveOn(socket.path, () =>
    new Response(
      new ReadableStream<Uint8Array>({
        async pull(controller) {
          controller.enqueue(encoder.encode("chunk"));
          await cancelled.promise;
        },
        cancel(reason) {
          cancelled.resolve(reason);
        },
      }),
    ));
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://localhost/"));
  assert.ok(response.body);
  const reader = response.body.getReader();
  await within(reader.read(), 2000, "the first chunk");
  await reader.cancel();
  await within(cancelled.promise, 2000, "the worker's stream to be cancelled");
  assert.equal(client.connectionCount, 0);
});

Deno.test("UnixHttpClient.request() does not forward hop-by-hop request headers", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, echoHandler);
  using client = clientFor(socket.path);
  const response = await client.request(
    new Request("http://localhost/", {
      headers: {
        "connection": "x-secret, X-Other",
        "x-secret": "1",
        "x-other": "2",
        "keep-alive": "timeout=5",
        "te": "trailers",
        "trailer": "x-t",
        "upgrade": "websocket",
        "proxy-authorization": "Basic abc",
        "proxy-connection": "keep-alive",
        "x-kept": "yes",
      },
    }),
  );
  const echo: Echo = await response.json();
  for (
    const name of [
      "x-secret",
      "x-other",
      "keep-alive",
      "te",
      "trailer",
      "upgrade",
      "proxy-authorization",
      "proxy-connection",
    ]
  ) {
    assert.equal(echo.headers[name], undefined, `${name} was forwarded`);
  }
  assert.notEqual(echo.headers["connection"], "x-secret, X-Other");
  assert.equal(echo.headers["x-kept"], "yes");
});

Deno.test("UnixHttpClient.request() fails with WORKER_CRASHED after close()", async () => {
  await using socket = await tempSocket();
  await using _server = serveOn(socket.path, () => new Response("ok"));
  using client = clientFor(socket.path);
  await (await client.request(new Request("http://localhost/"))).text();
  client.close();
  assert.equal(client.connectionCount, 0);
  await assert.rejects(
    client.request(new Request("http://localhost/")),
    isRuntimeError("WORKER_CRASHED"),
  );
});

// Regression: a failed connect escaped as Deno's NotFound / ConnectionRefused instead of a
// RuntimeError, so the worker API passed it on untranslated (a 500 "internal" answer).
Deno.test("UnixHttpClient.request() fails with WORKER_CRASHED when nothing listens", async (t) => {
  await t.step("no socket file", async () => {
    await using socket = await tempSocket();
    using client = clientFor(socket.path);
    await assert.rejects(
      client.request(new Request("http://localhost/")),
      isRuntimeError("WORKER_CRASHED"),
    );
    assert.equal(client.connectionCount, 0);
  });
  await t.step("a path that is not a socket", async () => {
    await using socket = await tempSocket();
    await Deno.writeTextFile(socket.path, "not a socket");
    using client = clientFor(socket.path);
    await assert.rejects(
      client.request(new Request("http://localhost/")),
      isRuntimeError("WORKER_CRASHED"),
    );
    assert.equal(client.connectionCount, 0);
  });
});

// --- misbehaving worker (raw server) ------------------------------------------------------------

Deno.test("UnixHttpClient.request() rejects a malformed response head with BAD_RESPONSE", async (t) => {
  const cases = {
    "misspelled protocol": "HTP/1.1 200 OK\r\n\r\n",
    "four-digit status": "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/2 status line": "HTTP/2 200\r\n\r\n",
    "garbage": "hello there\r\n\r\n",
    "header without colon": "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "header with empty name": "HTTP/1.1 200 OK\r\n: value\r\n\r\n",
    "content-length not a number": "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    "negative content-length": "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
  };
  for (const [name, response] of Object.entries(cases)) {
    await t.step(name, async () => {
      await using socket = await tempSocket();
      await using server = rawServer(socket.path, answerOnce(response));
      using client = clientFor(socket.path);
      await assert.rejects(
        client.request(new Request("http://localhost/")),
        isRuntimeError("BAD_RESPONSE"),
      );
      assert.equal(client.connectionCount, 0);
      assert.equal(server.heads.length, 1);
    });
  }
});

Deno.test("UnixHttpClient.request() sends an absolute-form request line", async () => {
  await using socket = await tempSocket();
  await using server = rawServer(
    socket.path,
    answerOnce("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
  );
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://fn.local:81/a/b?c=d#frag"));
  assert.equal(response.status, 200);
  await response.body?.cancel();
  const [requestLine, ...headerLines] = server.heads[0].split("\r\n");
  assert.equal(requestLine, "GET http://fn.local:81/a/b?c=d HTTP/1.1");
  assert.ok(headerLines.includes("host: fn.local:81"));
});

Deno.test("UnixHttpClient.request() fails with WORKER_CRASHED when the worker closes without answering", async () => {
  await using socket = await tempSocket();
  await using server = rawServer(socket.path, async (conn) => {
    await conn.readHead();
  });
  using client = clientFor(socket.path);
  await assert.rejects(
    client.request(new Request("http://localhost/")),
    isRuntimeError("WORKER_CRASHED"),
  );
  assert.equal(client.connectionCount, 0);
  assert.equal(server.accepted, 1, "no retry on a fresh connection");
});

Deno.test("UnixHttpClient.request() fails with WORKER_CRASHED when the head is cut short", async () => {
  await using socket = await tempSocket();
  await using _server = rawServer(
    socket.path,
    answerOnce("HTTP/1.1 200 OK\r\nContent-Len"),
  );
  using client = clientFor(socket.path);
  await assert.rejects(
    client.request(new Request("http://localhost/")),
    isRuntimeError("WORKER_CRASHED"),
  );
});

Deno.test("UnixHttpClient.request() errors the body with WORKER_CRASHED when it is cut short", async (t) => {
  const cases = {
    "content-length": "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
    "chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
    "chunked without last chunk":
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
  };
  for (const [name, raw] of Object.entries(cases)) {
    await t.step(name, async () => {
      await using socket = await tempSocket();
      await using _server = rawServer(socket.path, answerOnce(raw));
      using client = clientFor(socket.path);
      const response = await client.request(new Request("http://localhost/"));
      assert.equal(response.status, 200);
      await assert.rejects(response.text(), isRuntimeError("WORKER_CRASHED"));
      assert.equal(client.connectionCount, 0);
    });
  }
});

Deno.test("UnixHttpClient.request() errors the body with BAD_RESPONSE on a malformed chunk size", async () => {
  await using socket = await tempSocket();
  await using _server = rawServer(
    socket.path,
    answerOnce("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
  );
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://localhost/"));
  await assert.rejects(response.text(), isRuntimeError("BAD_RESPONSE"));
});

Deno.test("UnixHttpClient.request() decodes a chunked response with a trailer and reuses the connection", async () => {
  await using socket = await tempSocket();
  await using server = rawServer(socket.path, async (conn, _index, heads) => {
    const first = await conn.readHead();
    if (first === null) return;
    heads.push(first);
    // Written in pieces so chunk-size lines and data straddle reads.
    const pieces = [
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\nKeep-Alive: timeout=5\r\n",
      "Content-Type: text/plain\r\n\r\n5\r\nhel",
      "lo\r\n1;ext=1\r\n \r\n",
      "6\r\nworld!\r\n",
      "0\r\nx-t: v\r\n\r\n",
    ];
    for (const piece of pieces) {
      await conn.write(piece);
      await delay(5);
    }
    const second = await conn.readHead();
    if (second === null) return;
    heads.push(second);
    await conn.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    await conn.readHead();
  });
  using client = clientFor(socket.path);
  const first = await within(client.request(new Request("http://localhost/1")), 2000, "first");
  assert.equal(first.headers.get("content-type"), "text/plain");
  for (const name of ["transfer-encoding", "trailer", "keep-alive", "x-t"]) {
    assert.equal(first.headers.has(name), false, `${name} was relayed`);
  }
  assert.equal(await within(first.text(), 2000, "the chunked body"), "hello world!");
  assert.equal(client.connectionCount, 1);
  const second = await within(client.request(new Request("http://localhost/2")), 2000, "second");
  assert.equal(await second.text(), "ok");
  assert.equal(client.connectionCount, 1);
  assert.equal(server.accepted, 1, "both requests went over one connection");
  assert.equal(server.heads.length, 2);
});

Deno.test("UnixHttpClient.request() reads a close-delimited body", async (t) => {
  const cases = {
    "Connection: close": "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
    "HTTP/1.0 without length": "HTTP/1.0 200 OK\r\n\r\n",
    "HTTP/1.1 without length": "HTTP/1.1 200 OK\r\n\r\n",
  };
  for (const [name, head] of Object.entries(cases)) {
    await t.step(name, async () => {
      await using socket = await tempSocket();
      await using _server = rawServer(socket.path, async (conn) => {
        if ((await conn.readHead()) === null) return;
        await conn.write(head);
        await conn.write("abc");
        await delay(5);
        await conn.write("def");
      });
      using client = clientFor(socket.path);
      const response = await client.request(new Request("http://localhost/"));
      assert.equal(response.headers.has("connection"), false);
      assert.equal(await within(response.text(), 2000, "the body"), "abcdef");
      assert.equal(client.connectionCount, 0, "a close-delimited connection is not reused");
    });
  }
});

Deno.test("UnixHttpClient.request() skips interim 1xx responses", async () => {
  await using socket = await tempSocket();
  await using _server = rawServer(
    socket.path,
    answerOnce(
      "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" +
        "HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\ndone",
    ),
  );
  using client = clientFor(socket.path);
  const response = await client.request(new Request("http://localhost/"));
  assert.equal(response.status, 201);
  assert.equal(response.headers.has("link"), false);
  assert.equal(await response.text(), "done");
});

Deno.test("UnixHttpClient.request() retries a bodiless request when an idle connection was closed", async () => {
  await using socket = await tempSocket();
  const firstClosed = deferred();
  await using server = rawServer(socket.path, async (conn, index) => {
    if ((await conn.readHead()) === null) return;
    await conn.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#${index}`);
    if (index === 0) {
      // The worker drops the kept-alive connection while it is idle in the client's pool.
      conn.close();
      firstClosed.resolve();
      return;
    }
    await conn.readHead();
  });
  using client = clientFor(socket.path);
  assert.equal(await (await client.request(new Request("http://localhost/"))).text(), "#0");
  await firstClosed.promise;
  const again = await within(client.request(new Request("http://localhost/")), 2000, "retry");
  assert.equal(await again.text(), "#1");
  assert.equal(server.accepted, 2);
});

Deno.test("UnixHttpClient.request() does not retry a request with a body on a closed connection", async () => {
  await using socket = await tempSocket();
  const firstClosed = deferred();
  await using server = rawServer(socket.path, async (conn, index) => {
    if ((await conn.readHead()) === null) return;
    await conn.write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n#${index}`);
    conn.close();
    firstClosed.resolve();
  });
  using client = clientFor(socket.path);
  assert.equal(await (await client.request(new Request("http://localhost/"))).text(), "#0");
  await firstClosed.promise;
  await assert.rejects(
    client.request(new Request("http://localhost/", { method: "POST", body: "once" })),
    isRuntimeError("WORKER_CRASHED"),
  );
  assert.equal(server.accepted, 1);
});

Deno.test("UnixHttpClient.request() relays whole bodies byte for byte with the worker's content-type", async (t) => {
  await using socket = await tempSocket();
  const bodies: Record<string, { bytes: Uint8Array; type?: string }> = {
    "/text-json": { bytes: encoder.encode('{"a":"é"}'), type: "application/json" },
    "/text-untyped": { bytes: encoder.encode("plain words") },
    "/bom": { bytes: new Uint8Array([0xef, 0xbb, 0xbf, 0x68, 0x69]), type: "text/plain" },
    "/binary": { bytes: new Uint8Array([0xff, 0x00, 0xc3, 0x28, 0x80]) },
    "/large-text": { bytes: encoder.encode("x".repeat(40_000)), type: "text/plain" },
  };
  await using _server = serveOn(socket.path, (req) => {
    const { bytes, type } = bodies[new URL(req.url).pathname];
    const response = new Response(bytes.slice());
    if (type) response.headers.set("content-type", type);
    return response;
  });
  using client = clientFor(socket.path);
  for (const [path, { bytes, type }] of Object.entries(bodies)) {
    await t.step(path, async () => {
      const response = await client.request(new Request(`http://localhost${path}`));
      assert.deepEqual(new Uint8Array(await response.arrayBuffer()), bytes);
      assert.equal(response.headers.get("content-type"), type ?? null);
    });
  }
});
