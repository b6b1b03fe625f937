import assert from "node:assert/strict";
import * as jose from "jose";
import { fetchText, fixtureMain, withRuntime } from "../test_utils.ts";

const SECRET = "super-secret-jwt-token-with-at-least-32-characters";

const FUNCTIONS_CONFIG = {
  echo: { entrypointPath: "tests/fixtures/functions/echo/index.ts", verifyJWT: false },
  "default-export": {
    entrypointPath: "tests/fixtures/functions/default-export/index.ts",
    verifyJWT: true,
  },
  "module-not-found": {
    entrypointPath: "tests/fixtures/functions/module-not-found/index.ts",
    verifyJWT: false,
  },
  "top-level-throw": {
    entrypointPath: "tests/fixtures/functions/top-level-throw/index.ts",
    verifyJWT: false,
  },
};

function sign(secret: string): Promise<string> {
  return new jose.SignJWT({ role: "anon" })
    .setProtectedHeader({ alg: "HS256" })
    .setExpirationTime("5m")
    .sign(new TextEncoder().encode(secret));
}

Deno.test("the Supabase CLI's functions-serve main service runs unchanged", async (t) => {
  await withRuntime({
    args: [`--main-service=${fixtureMain("cli-functions-serve")}`],
    env: {
      SUPABASE_INTERNAL_FUNCTIONS_CONFIG: JSON.stringify(FUNCTIONS_CONFIG),
      SUPABASE_INTERNAL_JWT_SECRET: SECRET,
      SUPABASE_INTERNAL_HOST_PORT: "54321",
      SUPABASE_URL: "http://127.0.0.1:54321",
    },
  }, async (runtime) => {
    await t.step("health answers ok", async () => {
      const { status, body } = await fetchText(`${runtime.url}/_internal/health`);
      assert.deepEqual([status, JSON.parse(body)], [200, { message: "ok" }]);
    });

    await t.step("a function without JWT checks is served with the filtered env", async () => {
      const { status, body } = await fetchText(`${runtime.url}/echo/path?q=1`);
      assert.deepEqual(status, 200);
      const echoed = JSON.parse(body);
      assert.deepEqual(echoed.url, `${runtime.url}/echo/path?q=1`);
      assert.deepEqual(echoed.env.SUPABASE_URL, "http://127.0.0.1:54321");
      for (const name of Object.keys(echoed.env)) {
        assert.deepEqual(name.startsWith("SUPABASE_INTERNAL_"), false, name);
      }
      assert.deepEqual("PATH" in echoed.env || "HOME" in echoed.env, false);
    });

    await t.step("a JWT-protected function needs a valid bearer token", async () => {
      const missing = await fetchText(`${runtime.url}/default-export`);
      assert.deepEqual(missing.status, 401);
      assert.deepEqual(JSON.parse(missing.body), { msg: "Error: Missing authorization header" });

      const wrong = await fetchText(`${runtime.url}/default-export`, {
        headers: {
          authorization: `Bearer ${await sign("another-secret-that-is-32-characters-long")}`,
        },
      });
      assert.deepEqual([wrong.status, JSON.parse(wrong.body)], [401, { msg: "Invalid JWT" }]);

      const ok = await fetchText(`${runtime.url}/default-export`, {
        headers: { authorization: `Bearer ${await sign(SECRET)}` },
      });
      assert.deepEqual(ok.status, 200);
      assert.deepEqual(JSON.parse(ok.body).style, "default-export");
    });

    await t.step("errors map to the CLI's status codes", async () => {
      const boot = await fetchText(`${runtime.url}/module-not-found`);
      assert.deepEqual(boot.status, 503);
      assert.deepEqual(JSON.parse(boot.body).code, "BOOT_ERROR");
      const thrown = await fetchText(`${runtime.url}/top-level-throw`);
      assert.deepEqual(thrown.status, 500);
      assert.deepEqual(JSON.parse(thrown.body).code, "WORKER_ERROR");
      const unknown = await fetchText(`${runtime.url}/nope`);
      assert.deepEqual([unknown.status, unknown.body], [404, "Function not found"]);
    });

    assert.match(runtime.stderr(), /serving the request with tests\/fixtures\/functions\/echo/);
  });
});
