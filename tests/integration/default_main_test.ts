/**
 * The built-in default main service (DESIGN §6) through a real runtime: routing, health and
 * metrics, the error table, and the environment functions get.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, withRuntime } from "../test_utils.ts";

/** What the echo fixture answers. */
interface EchoAnswer {
  method: string;
  url: string;
  body: string;
  pid: number;
  env: Record<string, string>;
}

/**
 * Sends `GET <target>` byte for byte on a fresh connection and returns the status and body.
 * `fetch` would normalise `%2e%2e` segments before sending; this does not.
 */
async function rawGet(baseUrl: string, target: string): Promise<{ status: number; body: string }> {
  const { hostname, port, host } = new URL(baseUrl);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    const head = `GET ${target} HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    const text = await new Response(conn.readable).text();
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
    return { status, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
  } finally {
    try {
      conn.close();
    } catch {
      // Reading to the end already closed it.
    }
  }
}

Deno.test("default main service routes, maps errors and shapes the function env", async (t) => {
  const envFile = await Deno.makeTempFile({ suffix: ".env" });
  try {
    await Deno.writeTextFile(
      envFile,
      '# comment\nFROM_ENV_FILE=file-value\nexport QUOTED_IN_FILE="two words"\n',
    );
    await withRuntime({
      args: [`--functions=${FUNCTION_FIXTURES}`, `--env-file=${envFile}`],
      env: {
        FOO_FOR_TEST: "bar",
        EDGE_RUNTIME_PORT: "0",
        SUPABASE_INTERNAL_TEST_SECRET: "hidden",
      },
    }, async (runtime) => {
      await t.step("GET /_internal/health answers 200 {message: ok}", async () => {
        const { status, body } = await fetchText(`${runtime.url}/_internal/health`);
        assert.equal(status, 200);
        assert.deepEqual(JSON.parse(body), { message: "ok" });
      });

      await t.step(
        "/<name>/ and /functions/v1/<name>/ both reach the function as /<name>/",
        async () => {
          const direct = await fetchText(`${runtime.url}/echo/x?y=1`);
          const gateway = await fetchText(`${runtime.url}/functions/v1/echo/x?y=1`);
          for (const answer of [direct, gateway]) {
            assert.equal(answer.status, 200);
            const url = new URL((JSON.parse(answer.body) as EchoAnswer).url);
            assert.equal(url.pathname, "/echo/x");
            assert.equal(url.search, "?y=1");
            assert.equal(url.searchParams.get("y"), "1");
          }
        },
      );

      await t.step("an unknown function name answers 404 Function not found", async () => {
        for (const path of ["/no-such-function", "/functions/v1/no-such-function/x"]) {
          const { status, body } = await fetchText(`${runtime.url}${path}`);
          assert.equal(status, 404, path);
          assert.equal(body, "Function not found", path);
        }
      });

      await t.step("names outside ^[A-Za-z0-9][A-Za-z0-9_-]*$ answer 404", async () => {
        for (
          const target of [
            "/_shared/x",
            "/functions/v1/_shared/x",
            "/_internal/x",
            "/echo%2e%2e/x",
            "/%2e%2e%2fecho",
            "/..%2fecho",
            "/%2e%2e%2f_shared/x",
            "/functions/v1/%2e%2e/echo",
            "/functions/v1/echo%2f%2e%2e%2fslow",
            "/echo/%2e%2e/_shared/x",
            "/.echo",
            "/-echo",
          ]
        ) {
          const { status } = await rawGet(runtime.url, target);
          assert.equal(status, 404, target);
        }
      });

      await t.step("a missing import answers 503 BOOT_ERROR with a generic body", async () => {
        const { status, body } = await fetchText(`${runtime.url}/module-not-found`);
        assert.equal(status, 503);
        assert.deepEqual(JSON.parse(body), {
          code: "BOOT_ERROR",
          message: "Worker failed to boot (please check logs)",
        });
        assert.ok(!body.includes("/"), `a path leaked into the body: ${body}`);
        assert.ok(!body.includes("does-not-exist"), `the cause leaked into the body: ${body}`);
        assert.ok(!/\bat\s/.test(body), `a stack leaked into the body: ${body}`);
        assert.ok(runtime.stderr().includes("Module not found"), "stderr lacks the cause");
      });

      await t.step("a module that throws at top level answers 500 WORKER_ERROR", async () => {
        const { status, body } = await fetchText(`${runtime.url}/top-level-throw`);
        assert.equal(status, 500);
        const answer = JSON.parse(body);
        assert.equal(answer.code, "WORKER_ERROR");
        assert.equal(typeof answer.message, "string");
        assert.ok(!body.includes("top-level boom"), `the cause leaked into the body: ${body}`);
      });

      await t.step("a function's own 500 passes through untouched", async () => {
        const own = await fetchText(`${runtime.url}/handler-throws/own-500`);
        assert.equal(own.status, 500);
        assert.equal(own.body, "my own failure");
        assert.equal(own.headers.get("x-own"), "yes");

        const before = await fetchText(`${runtime.url}/handler-throws`);
        const thrown = await fetchText(`${runtime.url}/handler-throws/throw`);
        assert.equal(thrown.status, 500);
        assert.ok(
          !thrown.body.includes("WORKER_ERROR"),
          `rewritten by the runtime: ${thrown.body}`,
        );
        assert.ok(!thrown.body.includes("handler boom"), `the cause leaked: ${thrown.body}`);
        const after = await fetchText(`${runtime.url}/handler-throws`);
        assert.equal(JSON.parse(after.body).pid, JSON.parse(before.body).pid);
      });

      await t.step("GET /_internal/metrics answers Prometheus text", async () => {
        const { status, body, headers } = await fetchText(`${runtime.url}/_internal/metrics`);
        assert.equal(status, 200);
        assert.match(headers.get("content-type") ?? "", /^text\/plain/);
        assert.match(body, /^# TYPE edge_runtime_workers gauge$/m);
        const live = [...body.matchAll(/^edge_runtime_workers\{function="[^"]+"\} (\d+)$/gm)]
          .reduce((sum, m) => sum + Number(m[1]), 0);
        // echo and handler-throws are warm at least.
        assert.ok(live >= 2, body);
      });

      await t.step("functions see the runtime env minus host and runtime names", async () => {
        const { env } = JSON.parse((await fetchText(`${runtime.url}/echo`)).body) as EchoAnswer;
        assert.equal(env.FOO_FOR_TEST, "bar");
        for (const name of ["PATH", "HOME", "PWD", "HOSTNAME", "EDGE_RUNTIME_PORT"]) {
          assert.equal(env[name], undefined, name);
        }
        assert.equal(env.SUPABASE_INTERNAL_TEST_SECRET, undefined);
        assert.equal(typeof env.SB_EXECUTION_ID, "string");
      });

      await t.step("--env-file adds its variables to the function env", async () => {
        const { env } = JSON.parse((await fetchText(`${runtime.url}/echo`)).body) as EchoAnswer;
        assert.equal(env.FROM_ENV_FILE, "file-value");
        assert.equal(env.QUOTED_IN_FILE, "two words");
      });
    });
  } finally {
    await Deno.remove(envFile);
  }
});

Deno.test("default main service never serves _-prefixed folders but lets functions import them", async () => {
  const functions = await Deno.makeTempDir({ prefix: "default-main-shared-" });
  try {
    await Deno.mkdir(`${functions}/_shared`);
    await Deno.writeTextFile(
      `${functions}/_shared/index.ts`,
      'export const greeting = "from shared";\nDeno.serve(() => new Response("served shared"));\n',
    );
    await Deno.mkdir(`${functions}/uses-shared`);
    await Deno.writeTextFile(
      `${functions}/uses-shared/index.ts`,
      'import { greeting } from "../_shared/index.ts";\n' +
        "Deno.serve(() => new Response(greeting));\n",
    );
    await withRuntime({ args: [`--functions=${functions}`] }, async (runtime) => {
      for (const path of ["/_shared", "/_shared/x", "/functions/v1/_shared/x"]) {
        const { status, body } = await fetchText(`${runtime.url}${path}`);
        assert.equal(status, 404, path);
        assert.equal(body, "Function not found", path);
      }
      const shared = await fetchText(`${runtime.url}/uses-shared`);
      assert.equal(shared.status, 200);
      assert.equal(shared.body, "from shared");
    });
  } finally {
    await Deno.remove(functions, { recursive: true });
  }
});
