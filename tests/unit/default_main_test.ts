/**
 * Unit tests for `runtime/default_main/`: routing, the metrics text, and the built-in main service
 * run in process against a fake `EdgeRuntime` API (no workers, no sockets) and a real temporary
 * functions folder.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  createDefaultMainService,
  FUNCTION_NAME_PATTERN,
  routeFunction,
} from "../../runtime/default_main/mod.ts";
import {
  InvalidWorkerCreation,
  InvalidWorkerResponse,
  WorkerAlreadyRetired,
  WorkerRequestCancelled,
  WorkerRequestIdleTimeout,
} from "../../runtime/errors.ts";
import { DEFAULT_WORKER_LIMITS } from "../../runtime/config.ts";
import { createLogger, type LogLevel } from "../../runtime/log.ts";
import type { EdgeRuntimeMainApi, RuntimeMetrics } from "../../runtime/main_service.ts";
import type {
  UserWorkerClass,
  UserWorkerCreateOptions,
  UserWorkerInstance,
} from "../../runtime/user_workers.ts";

const PROMETHEUS_TEXT = '# TYPE edge_runtime_workers gauge\nedge_runtime_workers{function="a"} 1\n';

const METRICS: RuntimeMetrics = {
  mainWorkerHeapStats: {
    totalHeapSize: 2000,
    usedHeapSize: 1234,
    externalMemory: 10,
    mallocedMemory: 20,
    totalPhysicalSize: 3000,
  },
  activeUserWorkersCount: 3,
  retiredUserWorkersCount: 7,
  receivedRequestsCount: 100,
  handledRequestsCount: 98,
};

const INFO: Deno.ServeHandlerInfo<Deno.Addr> = {
  remoteAddr: { transport: "tcp", hostname: "127.0.0.1", port: 50000 },
  completed: Promise.resolve(),
};

// --- routeFunction ------------------------------------------------------------------------------

Deno.test("routeFunction() routes /<name> to the function with the URL unchanged", async (t) => {
  const cases = {
    "http://localhost/hello": "hello",
    "http://localhost/hello/": "hello",
    "http://localhost/hello/x?y=1": "hello",
    "http://localhost/hello-world_2/a/b/c#frag": "hello-world_2",
    "https://edge.example:8443/Hello?": "Hello",
  };
  for (const [url, name] of Object.entries(cases)) {
    await t.step(url, () => {
      assert.deepEqual(routeFunction(url), { name, url });
    });
  }
});

Deno.test("routeFunction() strips the /functions/v1 gateway prefix and keeps the query", async (t) => {
  const cases = {
    "http://localhost/functions/v1/hello/x": "http://localhost/hello/x",
    "http://localhost/functions/v1/hello/x?y=1&z=2": "http://localhost/hello/x?y=1&z=2",
    "http://localhost/functions/v1/hello": "http://localhost/hello",
    "http://localhost/functions/v1/hello/": "http://localhost/hello/",
    "https://edge.example:8443/functions/v1/hello?q": "https://edge.example:8443/hello?q",
  };
  for (const [url, rewritten] of Object.entries(cases)) {
    await t.step(url, () => {
      assert.deepEqual(routeFunction(url), { name: "hello", url: rewritten });
    });
  }
});

Deno.test("routeFunction() returns undefined for invalid function names", async (t) => {
  const cases = [
    "http://localhost/_shared",
    "http://localhost/_shared/util.ts",
    "http://localhost/-x",
    "http://localhost/a%2e",
    "http://localhost/%2e%2e",
    "http://localhost/.env",
    "http://localhost/hello.ts",
    "http://localhost/a%20b",
    "http://localhost/caf%C3%A9",
    "http://localhost/",
    "http://localhost//hello",
    "http://localhost/functions/v1",
    "http://localhost/functions/v1/",
    "http://localhost/functions/v1/_shared",
    `http://localhost/${"a".repeat(129)}`,
  ];
  for (const url of cases) {
    await t.step(url.length > 60 ? `${url.slice(0, 40)}... (${url.length} chars)` : url, () => {
      assert.equal(routeFunction(url), undefined);
    });
  }
});

Deno.test("routeFunction() resolves dot segments first, so they cannot leave the folder", () => {
  // Deno.serve passes the target as sent; "%2e%2e" segments are resolved before the name is read:
  // the name is whatever follows, never "..", and the function sees the resolved URL.
  assert.deepEqual(routeFunction("http://localhost/%2e%2e/etc/passwd"), {
    name: "etc",
    url: "http://localhost/etc/passwd",
  });
  assert.equal(routeFunction("http://localhost/functions/v1/%2e%2e")?.name, "functions");
  assert.equal(routeFunction("http://localhost/functions/v1/%2e%2e/%2e%2e/x")?.name, "x");
  assert.equal(routeFunction("http://localhost/echo/%2e%2e/_shared/x"), undefined);
  assert.equal(routeFunction("http://localhost/echo/./x")?.name, "echo");
});

Deno.test("routeFunction() strips the gateway prefix only as a whole path segment", () => {
  assert.equal(routeFunction("http://localhost/functions/v1"), undefined);
  assert.equal(routeFunction("http://localhost/functions/v1x/y")?.name, "functions");
  assert.deepEqual(routeFunction("http://localhost/functions/v1?a=1"), undefined);
  assert.deepEqual(routeFunction("http://localhost/functions/v1/echo?a=1"), {
    name: "echo",
    url: "http://localhost/echo?a=1",
  });
  assert.deepEqual(routeFunction("http://localhost:9000/functions/v1/echo/x/y#frag"), {
    name: "echo",
    url: "http://localhost:9000/echo/x/y#frag",
  });
});

Deno.test("routeFunction() accepts a 128-character name", () => {
  const name = "a".repeat(128);
  assert.equal(routeFunction(`http://localhost/${name}/x`)?.name, name);
});

Deno.test("FUNCTION_NAME_PATTERN matches only URL-safe function names", async (t) => {
  for (const name of ["hello", "hello-world", "a_b", "A1", "0day", "x"]) {
    await t.step(`accepts "${name}"`, () => assert.ok(FUNCTION_NAME_PATTERN.test(name)));
  }
  for (const name of ["", "_shared", "-x", "a.b", "a/b", "a b", "café", "..", "a%2e"]) {
    await t.step(`rejects "${name}"`, () => assert.ok(!FUNCTION_NAME_PATTERN.test(name)));
  }
});

// --- createDefaultMainService -------------------------------------------------------------------

interface LogEntry {
  level: Exclude<LogLevel, "quiet">;
  line: string;
}

type CreateBehaviour = (
  options: UserWorkerCreateOptions,
  call: number,
) => UserWorkerInstance | Promise<UserWorkerInstance>;

/** A fake worker whose fetch runs `respond`. */
function fakeWorker(
  respond: (request: Request) => Response | Promise<Response>,
  key = "fake",
): UserWorkerInstance {
  return { key, fetch: (request) => Promise.resolve(respond(request)) };
}

/** A built-in main service over a fake API and a temporary functions folder. */
async function setup(create: CreateBehaviour, functionEnv: [string, string][] = []) {
  const functionsPath = await Deno.makeTempDir({ prefix: "default_main_test_" });
  await Deno.mkdir(join(functionsPath, "hello"));
  await Deno.writeTextFile(
    join(functionsPath, "hello", "index.ts"),
    "Deno.serve(() => new Response('hi'));\n",
  );
  const createCalls: UserWorkerCreateOptions[] = [];
  const logs: LogEntry[] = [];
  const userWorkers = {
    create(options: UserWorkerCreateOptions) {
      createCalls.push(options);
      try {
        return Promise.resolve(create(options, createCalls.length));
      } catch (error) {
        return Promise.reject(error);
      }
    },
    tryCleanupIdleWorkers: () => Promise.resolve(0),
    memStats: () => ({}),
  } as unknown as UserWorkerClass;
  let metrics: () => Promise<RuntimeMetrics> = () => Promise.resolve(METRICS);
  const api: EdgeRuntimeMainApi = {
    userWorkers,
    getRuntimeMetrics: () => metrics(),
    getPrometheusMetrics: () => PROMETHEUS_TEXT,
    applySupabaseTag() {},
    systemMemoryInfo: () => {
      throw new Error("not used");
    },
  };
  const handler = createDefaultMainService({
    functionsPath,
    functionEnv,
    api,
    logger: createLogger("debug", (level, line) => logs.push({ level, line })),
    settings: new Map(),
    verifyJwt: undefined,
    limits: DEFAULT_WORKER_LIMITS,
  });
  return {
    functionsPath,
    createCalls,
    logs,
    setMetrics(next: () => Promise<RuntimeMetrics>) {
      metrics = next;
    },
    fetch: (input: string | Request, init?: RequestInit) =>
      Promise.resolve(
        handler(
          input instanceof Request ? input : new Request(`http://localhost${input}`, init),
          INFO,
        ),
      ),
    errorLines: () => logs.filter((entry) => entry.level === "error").map((entry) => entry.line),
    async [Symbol.asyncDispose]() {
      await Deno.remove(functionsPath, { recursive: true });
    },
  };
}

Deno.test("createDefaultMainService() answers the health check", async () => {
  await using main = await setup(() => {
    throw new Error("create must not be called");
  });
  const response = await main.fetch("/_internal/health");
  assert.equal(response.status, 200);
  assert.deepEqual(await response.json(), { message: "ok" });
  assert.equal(main.createCalls.length, 0);
});

Deno.test("createDefaultMainService() serves metrics as JSON and Prometheus text", async () => {
  await using main = await setup(() => {
    throw new Error("create must not be called");
  });
  const json = await main.fetch("/_internal/metric");
  assert.equal(json.status, 200);
  assert.deepEqual(await json.json(), METRICS);
  const text = await main.fetch("/_internal/metrics");
  assert.equal(text.status, 200);
  assert.equal(text.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  assert.equal(await text.text(), PROMETHEUS_TEXT);
});

Deno.test("createDefaultMainService() answers 500 without details when metrics fail", async () => {
  await using main = await setup(() => {
    throw new Error("create must not be called");
  });
  main.setMetrics(() => Promise.reject(new Error("metrics exploded at /secret/path")));
  const response = await main.fetch("/_internal/metric");
  assert.equal(response.status, 500);
  const body = await response.text();
  assert.deepEqual(JSON.parse(body), {
    code: "Internal Server Error",
    message: "Request failed due to an internal server error",
  });
  assert.ok(!body.includes("exploded") && !body.includes("/secret/path"));
  assert.equal(main.errorLines().length, 1);
  assert.match(main.errorLines()[0], /metrics exploded/);
});

Deno.test("createDefaultMainService() answers 404 for a function that does not exist", async () => {
  await using main = await setup(() => {
    throw new InvalidWorkerCreation("worker boot error: failed to bootstrap runtime: no entry");
  });
  const response = await main.fetch("/missing/path");
  assert.equal(response.status, 404);
  assert.equal(response.headers.get("content-type"), "text/plain;charset=UTF-8");
  assert.equal(await response.text(), "Function not found");
  assert.equal(main.createCalls.length, 1);
  assert.equal(main.createCalls[0].servicePath, join(main.functionsPath, "missing"));
  assert.deepEqual(main.errorLines(), []);
});

Deno.test("createDefaultMainService() answers 404 for an invalid name without creating", async (t) => {
  await using main = await setup(() => {
    throw new Error("create must not be called");
  });
  for (const path of ["/_shared/x.ts", "/-x", "/a%2e", "/%2e%2e", "/", "/hello.ts"]) {
    await t.step(path, async () => {
      const response = await main.fetch(path);
      assert.equal(response.status, 404);
      assert.equal(await response.text(), "Function not found");
    });
  }
  assert.equal(main.createCalls.length, 0);
});

Deno.test("createDefaultMainService() answers 503 BOOT_ERROR when an existing function fails to boot", async () => {
  const secret = "/very/secret/place/index.ts";
  await using main = await setup(() => {
    const cause = new Error(`SyntaxError at ${secret}:3:7`);
    throw new InvalidWorkerCreation(`worker boot error: Uncaught SyntaxError at ${secret}:3:7`, {
      cause,
    });
  });
  const response = await main.fetch("/hello");
  assert.equal(response.status, 503);
  const body = await response.text();
  assert.deepEqual(JSON.parse(body), {
    code: "BOOT_ERROR",
    message: "Worker failed to boot (please check logs)",
  });
  assert.ok(!body.includes(secret), "the body must not carry the path");
  assert.ok(!body.includes("SyntaxError"), "the body must not carry the cause");
  assert.ok(!/\bat\s/.test(body), "the body must not carry a stack");
  assert.ok(!body.includes(main.functionsPath));
  const errors = main.errorLines();
  assert.equal(errors.length, 1);
  assert.match(errors[0], /function "hello"/);
  assert.ok(errors[0].includes(secret), "the log carries the cause");
  assert.match(errors[0], /Caused by: /);
});

Deno.test("createDefaultMainService() maps worker errors to the error table", async (t) => {
  const cases = [
    {
      error: () => new InvalidWorkerResponse("connection closed before message completed"),
      status: 500,
      body: {
        code: "WORKER_ERROR",
        message: "Function exited due to an error (please check logs)",
      },
    },
    {
      error: () => new WorkerRequestCancelled(),
      status: 546,
      body: {
        code: "WORKER_LIMIT",
        message: "Worker failed to respond due to a resource limit (please check logs)",
      },
    },
    {
      error: () => new WorkerRequestIdleTimeout(),
      status: 504,
      body: {
        code: "WORKER_TIMEOUT",
        message: "Worker failed to respond in time (please check logs)",
      },
    },
    {
      error: () => new TypeError("something unexpected"),
      status: 500,
      body: {
        code: "Internal Server Error",
        message: "Request failed due to an internal server error",
      },
    },
  ];
  for (const where of ["create", "fetch"] as const) {
    for (const { error, status, body } of cases) {
      await t.step(`${error().name} from ${where}()`, async () => {
        await using main = await setup(() => {
          if (where === "create") throw error();
          return fakeWorker(() => {
            throw error();
          });
        });
        const response = await main.fetch("/hello/x");
        assert.equal(response.status, status);
        const text = await response.text();
        assert.deepEqual(JSON.parse(text), body);
        assert.ok(!text.includes("    at "), "no stack in the body");
        const errors = main.errorLines();
        assert.equal(errors.length, 1, "logged once");
        assert.ok(errors[0].includes(error().message), "the log carries the message");
        assert.ok(errors[0].includes("    at "), "the log carries the stack");
      });
    }
  }
});

Deno.test("createDefaultMainService() answers 499 without logging when the client went away", async () => {
  await using main = await setup(() =>
    fakeWorker(() => {
      throw new DOMException("The signal has been aborted", "AbortError");
    })
  );
  const response = await main.fetch("/hello");
  assert.equal(response.status, 499);
  assert.equal(response.body, null);
  assert.deepEqual(main.errorLines(), []);
});

Deno.test("createDefaultMainService() retries once with a fresh worker when one retired", async () => {
  await using main = await setup((_options, call) =>
    call === 1
      ? fakeWorker(() => {
        throw new WorkerAlreadyRetired();
      }, "old")
      : fakeWorker(() => new Response("fresh"), "new")
  );
  const response = await main.fetch("/hello");
  assert.equal(response.status, 200);
  assert.equal(await response.text(), "fresh");
  assert.equal(main.createCalls.length, 2);
  assert.deepEqual(main.createCalls[0], main.createCalls[1]);
  assert.deepEqual(main.errorLines(), []);
});

Deno.test("createDefaultMainService() retries when create() itself reports a retired worker", async () => {
  await using main = await setup((_options, call) => {
    if (call === 1) throw new WorkerAlreadyRetired();
    return fakeWorker(() => new Response("fresh"));
  });
  const response = await main.fetch("/hello");
  assert.equal(await response.text(), "fresh");
  assert.equal(main.createCalls.length, 2);
});

Deno.test("createDefaultMainService() gives up after one retry of a retired worker", async () => {
  await using main = await setup(() =>
    fakeWorker(() => {
      throw new WorkerAlreadyRetired();
    })
  );
  const response = await main.fetch("/hello");
  assert.equal(response.status, 503);
  assert.deepEqual(await response.json(), {
    code: "WORKER_RETIRED",
    message: "Worker is restarting, please retry",
  });
  assert.equal(main.createCalls.length, 2);
  assert.equal(main.errorLines().length, 1);
});

Deno.test("createDefaultMainService() passes a function's own 500 response through untouched", async () => {
  await using main = await setup(() =>
    fakeWorker(() =>
      new Response("my own failure", {
        status: 500,
        statusText: "Custom Failure",
        headers: { "x-own": "yes", "content-type": "text/x-own" },
      })
    )
  );
  const response = await main.fetch("/hello");
  assert.equal(response.status, 500);
  assert.equal(response.statusText, "Custom Failure");
  assert.equal(response.headers.get("x-own"), "yes");
  assert.equal(response.headers.get("content-type"), "text/x-own");
  assert.equal(await response.text(), "my own failure");
  assert.deepEqual(main.errorLines(), []);
});

Deno.test("createDefaultMainService() passes a function's 404 through untouched", async () => {
  await using main = await setup(() => fakeWorker(() => new Response("nope", { status: 404 })));
  const response = await main.fetch("/hello/missing");
  assert.equal(response.status, 404);
  assert.equal(await response.text(), "nope");
});

Deno.test("createDefaultMainService() sends /functions/v1/<name>/x to the worker as /<name>/x", async () => {
  const seen: { url: string; method: string; header: string | null; body: string }[] = [];
  await using main = await setup(() =>
    fakeWorker(async (request) => {
      seen.push({
        url: request.url,
        method: request.method,
        header: request.headers.get("x-test"),
        body: await request.text(),
      });
      return new Response("ok");
    })
  );
  const get = await main.fetch("/functions/v1/hello/x?y=1");
  assert.equal(await get.text(), "ok");
  const post = await main.fetch("/functions/v1/hello/x", {
    method: "POST",
    headers: { "x-test": "kept" },
    body: "payload",
  });
  assert.equal(await post.text(), "ok");
  assert.deepEqual(seen, [
    { url: "http://localhost/hello/x?y=1", method: "GET", header: null, body: "" },
    { url: "http://localhost/hello/x", method: "POST", header: "kept", body: "payload" },
  ]);
  assert.equal(main.createCalls[0].servicePath, join(main.functionsPath, "hello"));
});

Deno.test("createDefaultMainService() hands the original request to /<name> routes", async () => {
  const seen: Request[] = [];
  await using main = await setup(() =>
    fakeWorker((request) => {
      seen.push(request);
      return new Response("ok");
    })
  );
  const request = new Request("http://localhost/hello/x?y=1", { headers: { "x-a": "1" } });
  await (await main.fetch(request)).body?.cancel();
  assert.equal(seen.length, 1);
  assert.equal(seen[0].url, "http://localhost/hello/x?y=1");
  assert.equal(seen[0].headers.get("x-a"), "1");
});

Deno.test("createDefaultMainService() creates workers with the functions' env and default limits", async () => {
  await using main = await setup(
    () => fakeWorker(() => new Response("ok")),
    [["FOO", "1"], ["SUPABASE_URL", "http://db"]],
  );
  await (await main.fetch("/hello")).text();
  assert.deepEqual(main.createCalls[0], {
    servicePath: join(main.functionsPath, "hello"),
    envVars: [["FOO", "1"], ["SUPABASE_URL", "http://db"]],
    memoryLimitMb: 256,
    workerTimeoutMs: 400_000,
    cpuTimeSoftLimitMs: 1000,
    cpuTimeHardLimitMs: 2000,
    noModuleCache: false,
    forceCreate: false,
  });
});
