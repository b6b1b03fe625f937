/**
 * The main-service API as Supabase main services use it: `EdgeRuntime.userWorkers.create()` options,
 * `worker.fetch()`, the error classes and their messages, runtime metrics, and the forms a main
 * service may take. Pool policies are in `pool_policy_test.ts`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import {
  fetchText,
  fixture,
  fixtureMain,
  ROOT,
  runtimeCommandArgs,
  waitFor,
  withRuntime,
} from "../test_utils.ts";

const SUPABASE_API = "--main-service=" + fixtureMain("supabase-api");

/** What the `supabase-api` main service answers on errors. */
interface ErrorBody {
  msg: string;
  kind?: string;
}

/** What the `echo` fixture answers. */
interface EchoBody {
  method: string;
  url: string;
  headers: [string, string][];
  body: string;
  pid: number;
  env: Record<string, string>;
}

async function fetchJson<T>(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: T; headers: Headers }> {
  const response = await fetchText(url, init);
  try {
    return { ...response, body: JSON.parse(response.body) as T };
  } catch {
    throw new Error(`Expected JSON from ${url}, got ${response.status}: ${response.body}`);
  }
}

/** Asserts a 500 from the `supabase-api` main service and returns its `msg`. */
async function errorMessage(url: string, headers?: HeadersInit): Promise<ErrorBody> {
  const { status, body } = await fetchJson<ErrorBody>(url, { headers });
  assert.deepEqual(status, 500, `expected 500 with an error body, got ${JSON.stringify(body)}`);
  return body;
}

Deno.test("main service (supabase-api) relays requests and reports worker errors with Supabase's classes", async (t) => {
  const emptyDirs: string[] = [];
  try {
    await withRuntime({ args: [SUPABASE_API, "--request-wait-timeout=500"] }, async (rt) => {
      await t.step(
        "worker.fetch() keeps method, repeated headers, POST body and the URL",
        async () => {
          const { status, body } = await fetchJson<EchoBody>(`${rt.url}/echo/a?b=1`, {
            method: "POST",
            headers: [["x-repeated", "one"], ["x-repeated", "two"], ["content-type", "text/plain"]],
            body: "posted body",
          });
          assert.equal(status, 200);
          assert.equal(body.method, "POST");
          assert.deepEqual(body.url, `${rt.url}/echo/a?b=1`);
          assert.equal(body.body, "posted body");
          const headers = new Map(body.headers);
          assert.equal(headers.get("x-repeated"), "one, two");
          assert.equal(headers.get("content-type"), "text/plain");
        },
      );

      await t.step(
        "the function's env is exactly envVars, SB_EXECUTION_ID and TMPDIR",
        async () => {
          const { body } = await fetchJson<EchoBody>(`${rt.url}/echo`);
          assert.deepEqual(Object.keys(body.env).sort(), [
            "GREETING",
            "SB_EXECUTION_ID",
            "SECOND",
            "TMPDIR",
          ]);
          assert.equal(body.env.GREETING, "hello from envVars");
          assert.equal(body.env.SECOND, "2");
          assert.notEqual(body.env.SB_EXECUTION_ID, "");
        },
      );

      await t.step("the worker is a child of the runtime", async () => {
        const { body } = await fetchJson<EchoBody>(`${rt.url}/echo`);
        assert.ok((await rt.childPids()).includes(body.pid), `pid ${body.pid} is not a child`);
      });

      await t.step(
        "a function's console line reaches the runtime's stderr as [fn:<name>]",
        async () => {
          const marker = crypto.randomUUID();
          const { status, body } = await fetchText(`${rt.url}/logs-a-line?marker=${marker}`);
          assert.deepEqual([status, body], [200, "logged"]);
          const line = `[fn:logs-a-line] logs-a-line marker=${marker}`;
          await waitFor(() => rt.stderr().includes(line), 3000, `"${line}" in stderr`);
        },
      );

      await t.step("a missing import fails create() with the real cause", async () => {
        const { msg, kind } = await errorMessage(`${rt.url}/module-not-found`);
        assert.equal(kind, "InvalidWorkerCreation");
        assert.ok(msg.startsWith("InvalidWorkerCreation: worker boot error: "), msg);
        assert.ok(msg.includes("Module not found"), msg);
        assert.ok(msg.includes("does-not-exist.ts"), msg);
      });

      await t.step("a syntax error fails create() with the parse error", async () => {
        const { msg, kind } = await errorMessage(`${rt.url}/syntax-error`);
        assert.equal(kind, "InvalidWorkerCreation");
        assert.ok(msg.startsWith("InvalidWorkerCreation: worker boot error: "), msg);
        assert.ok(msg.includes("Expression expected"), msg);
      });

      await t.step("a servicePath without an entry module fails create()", async () => {
        const dir = await Deno.makeTempDir({ prefix: "no-entry-" });
        emptyDirs.push(dir);
        const { msg, kind } = await errorMessage(`${rt.url}/no-entry`, { "x-service-path": dir });
        assert.equal(kind, "InvalidWorkerCreation");
        assert.ok(msg.startsWith("InvalidWorkerCreation: worker boot error: "), msg);
        assert.ok(msg.includes("could not find an appropriate entrypoint"), msg);
      });

      await t.step("a module that never finishes loading times out create()", async () => {
        const before = (await rt.childPids()).sort();
        const { msg, kind } = await errorMessage(`${rt.url}/never-ready`);
        assert.equal(kind, "InvalidWorkerCreation");
        assert.equal(msg, "InvalidWorkerCreation: worker did not respond in time");
        await waitFor(
          async () => String((await rt.childPids()).sort()) === String(before),
          3000,
          "the never-ready worker to be ended",
        );
      });

      await t.step("a top-level throw surfaces on fetch as InvalidWorkerResponse", async () => {
        const { msg, kind } = await errorMessage(`${rt.url}/top-level-throw`);
        assert.equal(kind, "InvalidWorkerResponse");
        assert.equal(
          msg,
          "InvalidWorkerResponse: event loop error while evaluating the module: Error: top-level boom",
        );
      });

      await t.step("a module without a handler surfaces as InvalidWorkerResponse", async () => {
        const { msg, kind } = await errorMessage(`${rt.url}/no-handler`);
        assert.equal(kind, "InvalidWorkerResponse");
        assert.ok(msg.startsWith("InvalidWorkerResponse: "), msg);
      });

      await t.step("a handler that throws answers 500 and its worker survives", async () => {
        const thrown = await fetchText(`${rt.url}/handler-throws/throw`);
        assert.deepEqual([thrown.status, thrown.body], [500, "Internal Server Error"]);
        const first = await fetchJson<{ pid: number }>(`${rt.url}/handler-throws/ok`);
        const again = await fetchText(`${rt.url}/handler-throws/throw`);
        assert.equal(again.status, 500);
        const second = await fetchJson<{ pid: number }>(`${rt.url}/handler-throws/ok`);
        assert.equal(first.status, 200);
        assert.equal(second.body.pid, first.body.pid);
      });

      await t.step("a function's own 500 passes through with its body and headers", async () => {
        const { status, body, headers } = await fetchText(`${rt.url}/handler-throws/own-500`);
        assert.deepEqual([status, body], [500, "my own failure"]);
        assert.equal(headers.get("x-own"), "yes");
      });

      await t.step("a handler that returns a non-Response answers 502", async () => {
        const { status } = await fetchText(`${rt.url}/handler-throws/not-a-response`);
        assert.equal(status, 502);
      });

      await t.step("an already-aborted signal rejects fetch with AbortError", async () => {
        const { msg } = await errorMessage(`${rt.url}/echo`, { "x-abort-before-fetch": "true" });
        assert.equal(msg, "AbortError: The signal has been aborted");
      });

      await t.step("the main service can import npm: packages", async () => {
        const { status, body } = await fetchJson(`${rt.url}/_internal/jwt`);
        assert.deepEqual([status, body], [200, { role: "anon" }]);
      });

      await t.step("the error classes on Deno.errors print as `Name: message`", async () => {
        const { body } = await fetchJson(`${rt.url}/_internal/error-classes`);
        assert.deepEqual(body, [
          "InvalidWorkerCreation: m",
          "InvalidWorkerResponse: m",
          "WorkerRequestCancelled: m",
          "WorkerAlreadyRetired: m",
          "WorkerRequestIdleTimeout: m",
        ]);
      });

      await t.step("maybeEntrypoint runs the given file URL", async () => {
        const dir = fixture("default-export");
        const { status, body } = await fetchJson(`${rt.url}/by-entrypoint/x`, {
          headers: {
            "x-service-path": dir,
            "x-entrypoint": pathToFileURL(join(dir, "index.ts")).href,
          },
        });
        assert.deepEqual([status, body], [200, {
          style: "default-export",
          path: "/by-entrypoint/x",
        }]);
      });

      await t.step("maybeModuleCode runs inline source when servicePath has no entry", async () => {
        const dir = await Deno.makeTempDir({ prefix: "inline-code-" });
        emptyDirs.push(dir);
        const { status, body } = await fetchText(`${rt.url}/inline`, {
          headers: {
            "x-service-path": dir,
            "x-module-code": 'export default { fetch: () => new Response("inline") }',
          },
        });
        assert.deepEqual([status, body], [200, "inline"]);
      });

      await t.step("a relative servicePath resolves against the runtime's cwd", async () => {
        const { status, body } = await fetchJson<EchoBody>(`${rt.url}/echo/relative`, {
          // forceCreate, so that a worker really boots from the relative path.
          headers: {
            "x-service-path": "./tests/fixtures/functions/echo",
            "x-force-create": "true",
          },
        });
        assert.equal(status, 200);
        assert.equal(body.url, `${rt.url}/echo/relative`);
        assert.ok((await rt.childPids()).includes(body.pid));
      });
    });
  } finally {
    for (const dir of emptyDirs) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main service (supabase-api) reads runtime metrics and cleans up idle workers", async () => {
  await withRuntime({ args: [SUPABASE_API] }, async (rt) => {
    const echo = await fetchJson<EchoBody>(`${rt.url}/echo`);
    assert.equal(echo.status, 200);
    type Metrics = { activeUserWorkersCount: number; receivedRequestsCount: number };
    const before = await fetchJson<Metrics>(`${rt.url}/_internal/metric`);
    assert.ok(before.body.activeUserWorkersCount >= 1, JSON.stringify(before.body));
    const after = await fetchJson<Metrics>(`${rt.url}/_internal/metric`);
    assert.ok(
      after.body.receivedRequestsCount > before.body.receivedRequestsCount,
      `${after.body.receivedRequestsCount} <= ${before.body.receivedRequestsCount}`,
    );

    const cleanup = await fetchJson(`${rt.url}/_internal/cleanup-idle-workers`);
    assert.deepEqual([cleanup.status, cleanup.body], [200, { count: 1 }]);
    await waitFor(
      async () => !(await rt.childPids()).includes(echo.body.pid),
      3000,
      "the idle worker to end",
    );
    await waitFor(
      async () => {
        const { body } = await fetchJson<Metrics>(`${rt.url}/_internal/metric`);
        return body.activeUserWorkersCount === 0;
      },
      3000,
      "activeUserWorkersCount to drop to 0",
    );
  });
});

Deno.test("main service in the `export default { fetch }` form serves requests", async () => {
  await withRuntime(
    { args: ["--main-service=" + fixtureMain("default-export-main")] },
    async (rt) => {
      const { status, body } = await fetchJson<EchoBody>(`${rt.url}/anything?x=1`);
      assert.equal(status, 200);
      assert.deepEqual(body.url, `${rt.url}/anything?x=1`);
      assert.ok((await rt.childPids()).includes(body.pid));
    },
  );
});

Deno.test("main service's Deno.serve({ port, onListen }) gets the runtime's real address", async () => {
  await withRuntime(
    { args: ["--main-service=" + fixtureMain("options-object-main")] },
    async (rt) => {
      const { status, body } = await fetchJson<{ listenedOn: Deno.NetAddr }>(`${rt.url}/`);
      assert.equal(status, 200);
      assert.equal(body.listenedOn.port, Number(new URL(rt.url).port));
    },
  );
});

Deno.test("runtime exits non-zero with the cause when the main service throws at load", async () => {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: runtimeCommandArgs(["--main-service=" + fixtureMain("throws-at-load")]),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).output();
  const text = new TextDecoder().decode(stderr);
  assert.notEqual(code, 0, text);
  assert.ok(text.includes("main service exploded at load"), text);
});

Deno.test("main service outside the project can use node: imports and absolute servicePaths", async () => {
  const dir = await Deno.makeTempDir({ prefix: "outside-main-" });
  try {
    await Deno.writeTextFile(
      join(dir, "index.ts"),
      `// A main service that lives outside the project and forwards to the echo fixture.
import { join } from "node:path";

declare const EdgeRuntime: {
  userWorkers: {
    create(options: Record<string, unknown>): Promise<{ fetch(r: Request): Promise<Response> }>;
  };
};

const ECHO = join(${JSON.stringify(fixture("echo"))}, ".");

Deno.serve(async (req: Request) => {
  const worker = await EdgeRuntime.userWorkers.create({
    servicePath: ECHO,
    envVars: [["FROM", "outside"]],
  });
  return await worker.fetch(req);
});
`,
    );
    await withRuntime({ args: ["--main-service=" + dir] }, async (rt) => {
      const { status, body } = await fetchJson<EchoBody>(`${rt.url}/outside`);
      assert.equal(status, 200);
      assert.deepEqual(body.url, `${rt.url}/outside`);
      assert.equal(body.env.FROM, "outside");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
