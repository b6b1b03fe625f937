/**
 * JWT checks and per-function settings of the built-in main service (DESIGN §6) through a real
 * runtime: 401 answers with the Supabase CLI's bodies, `verify_jwt` from config.json and
 * config.toml, `--no-verify-jwt`, `entrypoint`, `static_files`, and `./supabase/functions`
 * found from the working directory.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import * as jose from "jose";
import { fetchText, withRuntime } from "../test_utils.ts";

const SECRET = "integration-test-jwt-secret-with-32-plus-characters";

/** What the `echo` function answers. */
interface EchoAnswer {
  method: string;
  path: string;
  authorization: string | null;
}

const ECHO_SOURCE = `Deno.serve((req) =>
  Response.json({
    method: req.method,
    path: new URL(req.url).pathname,
    authorization: req.headers.get("authorization"),
  })
);
`;

/** Reads the file named by `?path=`; answers its text, or `error:<name>` when it cannot. */
const READER_SOURCE = `Deno.serve(async (req) => {
  const path = new URL(req.url).searchParams.get("path") ?? "";
  try {
    return new Response(await Deno.readTextFile(path));
  } catch (error) {
    return new Response("error:" + (error as Error).name);
  }
});
`;

/** Writes `files` (path relative to `root` → text) under a new temp dir and returns its path. */
async function writeProject(files: Record<string, string>): Promise<string> {
  const root = await Deno.makeTempDir({ prefix: "jwt-project-" });
  for (const [relative, text] of Object.entries(files)) {
    const path = join(root, relative);
    await Deno.mkdir(dirname(path), { recursive: true });
    await Deno.writeTextFile(path, text);
  }
  return root;
}

function hs256(secret: string, exp?: number): Promise<string> {
  const jwt = new jose.SignJWT({ role: "anon" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt();
  if (exp !== undefined) jwt.setExpirationTime(exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

async function assertUnauthorized(
  answer: Promise<{ status: number; body: string; headers: Headers }>,
  msg: string,
): Promise<void> {
  const { status, body, headers } = await answer;
  assert.equal(status, 401, body);
  assert.deepEqual(JSON.parse(body), { msg });
  assert.match(headers.get("content-type") ?? "", /^application\/json/);
}

Deno.test("default main service checks JWTs and applies per-function settings", async (t) => {
  const root = await writeProject({
    "supabase/config.toml": "[functions.open-toml]\nverify_jwt = false\n[api]\nport = 54321\n",
    "supabase/functions/echo/index.ts": ECHO_SOURCE,
    "supabase/functions/open-json/index.ts": ECHO_SOURCE,
    "supabase/functions/open-json/config.json": '{"verify_jwt": false}',
    "supabase/functions/open-toml/index.ts": ECHO_SOURCE,
    "supabase/functions/custom-entry/main.ts": 'Deno.serve(() => new Response("from main.ts"));\n',
    "supabase/functions/custom-entry/config.json": '{"entrypoint": "main.ts"}',
    "supabase/functions/static-reader/index.ts": READER_SOURCE,
    "supabase/functions/static-reader/config.json": JSON.stringify({
      verify_jwt: false,
      static_files: ["../../assets/allowed-*.txt"],
    }),
    "supabase/assets/allowed-1.txt": "allowed content",
    "supabase/assets/secret.txt": "secret content",
  });
  const functions = join(root, "supabase", "functions");
  const valid = await hs256(SECRET);
  const bearer = { headers: { authorization: `Bearer ${valid}` } };
  const es256 = await jose.generateKeyPair("ES256");
  const jwks = JSON.stringify({
    keys: [{ ...(await jose.exportJWK(es256.publicKey)), kid: "es", alg: "ES256" }],
  });
  try {
    await withRuntime(
      { args: [`--functions=${functions}`], env: { JWT_SECRET: SECRET, JWT_JWKS: jwks } },
      async (runtime) => {
        await t.step("no Authorization header → 401 Missing authorization header", async () => {
          await assertUnauthorized(
            fetchText(`${runtime.url}/echo`),
            "Error: Missing authorization header",
          );
          await assertUnauthorized(
            fetchText(`${runtime.url}/functions/v1/echo/x`, { method: "POST", body: "x" }),
            "Error: Missing authorization header",
          );
        });

        await t.step(
          "a header that is not Bearer → 401 Auth header is not 'Bearer {token}'",
          async () => {
            for (const authorization of ["Basic dXNlcjpwYXNz", `Token ${valid}`]) {
              await assertUnauthorized(
                fetchText(`${runtime.url}/echo`, { headers: { authorization } }),
                "Error: Auth header is not 'Bearer {token}'",
              );
            }
          },
        );

        await t.step("a token signed with another secret → 401 Invalid JWT", async () => {
          const token = await hs256("some-other-secret-that-is-32-characters-long");
          await assertUnauthorized(
            fetchText(`${runtime.url}/echo`, { headers: { authorization: `Bearer ${token}` } }),
            "Invalid JWT",
          );
          await assertUnauthorized(
            fetchText(`${runtime.url}/echo`, { headers: { authorization: "Bearer not.a.jwt" } }),
            "Invalid JWT",
          );
        });

        await t.step("an expired token → 401 Invalid JWT", async () => {
          const token = await hs256(SECRET, Math.floor(Date.now() / 1000) - 60);
          await assertUnauthorized(
            fetchText(`${runtime.url}/echo`, { headers: { authorization: `Bearer ${token}` } }),
            "Invalid JWT",
          );
        });

        await t.step("a valid HS256 token → 200, and the function sees the header", async () => {
          const { status, body } = await fetchText(`${runtime.url}/functions/v1/echo/x`, bearer);
          assert.equal(status, 200, body);
          const answer = JSON.parse(body) as EchoAnswer;
          assert.equal(answer.path, "/echo/x");
          assert.equal(answer.authorization, `Bearer ${valid}`);
        });

        await t.step("a valid ES256 token checked against JWT_JWKS → 200", async () => {
          const token = await new jose.SignJWT({ role: "anon" })
            .setProtectedHeader({ alg: "ES256", kid: "es" })
            .setExpirationTime("1h")
            .sign(es256.privateKey);
          const ok = await fetchText(`${runtime.url}/echo`, {
            headers: { authorization: `Bearer ${token}` },
          });
          assert.equal(ok.status, 200, ok.body);
          const other = await jose.generateKeyPair("ES256");
          const forged = await new jose.SignJWT({ role: "anon" })
            .setProtectedHeader({ alg: "ES256", kid: "es" })
            .sign(other.privateKey);
          await assertUnauthorized(
            fetchText(`${runtime.url}/echo`, { headers: { authorization: `Bearer ${forged}` } }),
            "Invalid JWT",
          );
        });

        await t.step("OPTIONS without a token reaches the function", async () => {
          const { status, body } = await fetchText(`${runtime.url}/echo`, { method: "OPTIONS" });
          assert.equal(status, 200, body);
          assert.equal((JSON.parse(body) as EchoAnswer).method, "OPTIONS");
        });

        await t.step(
          "config.json verify_jwt=false → 200 without (or with a bad) token",
          async () => {
            const plain = await fetchText(`${runtime.url}/open-json`);
            assert.equal(plain.status, 200, plain.body);
            assert.equal((JSON.parse(plain.body) as EchoAnswer).path, "/open-json");
            const bad = await fetchText(`${runtime.url}/open-json`, {
              headers: { authorization: "Bearer not.a.jwt" },
            });
            assert.equal(bad.status, 200, bad.body);
          },
        );

        await t.step(
          "config.toml [functions.x] verify_jwt=false → 200 without a token",
          async () => {
            const { status, body } = await fetchText(`${runtime.url}/functions/v1/open-toml`);
            assert.equal(status, 200, body);
            assert.equal((JSON.parse(body) as EchoAnswer).path, "/open-toml");
          },
        );

        await t.step("config.json entrypoint main.ts (no index.ts) is served", async () => {
          const { status, body } = await fetchText(`${runtime.url}/custom-entry`, bearer);
          assert.equal(status, 200, body);
          assert.equal(body, "from main.ts");
        });

        await t.step("static_files makes a file outside the function folder readable", async () => {
          const path = join(root, "supabase", "assets", "allowed-1.txt");
          const { status, body } = await fetchText(
            `${runtime.url}/static-reader?path=${encodeURIComponent(path)}`,
          );
          assert.equal(status, 200, body);
          assert.equal(body, "allowed content");
        });

        await t.step("a file that static_files does not list stays unreadable", async () => {
          const path = join(root, "supabase", "assets", "secret.txt");
          const { status, body } = await fetchText(
            `${runtime.url}/static-reader?path=${encodeURIComponent(path)}`,
          );
          assert.equal(status, 200, body);
          assert.equal(body, "error:NotCapable");
        });
      },
    );

    await withRuntime({
      args: [`--functions=${functions}`, "--no-verify-jwt"],
      env: { JWT_SECRET: SECRET },
    }, async (runtime) => {
      await t.step("--no-verify-jwt → 200 without a token, even with a secret set", async () => {
        const { status, body } = await fetchText(`${runtime.url}/echo`);
        assert.equal(status, 200, body);
        assert.equal((JSON.parse(body) as EchoAnswer).authorization, null);
      });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("default main service serves ./supabase/functions from its cwd, unchecked without a JWT secret", async (t) => {
  // Only supabase/functions/<name>: no ./functions, no --functions flag, no config.toml.
  const root = await writeProject({ "supabase/functions/hello/index.ts": ECHO_SOURCE });
  try {
    await withRuntime({
      cwd: root,
      // Empty values count as unset: checks stay off even if the test's own env has them.
      env: { JWT_SECRET: "", JWT_JWKS: "", SUPABASE_JWKS: "" },
    }, async (runtime) => {
      await t.step("./supabase/functions/hello answers at /hello without a token", async () => {
        const { status, body } = await fetchText(`${runtime.url}/hello`);
        assert.equal(status, 200, body);
        assert.equal((JSON.parse(body) as EchoAnswer).path, "/hello");
      });

      await t.step("an invalid token is not checked either", async () => {
        const { status, body } = await fetchText(`${runtime.url}/functions/v1/hello`, {
          headers: { authorization: "Bearer not.a.jwt" },
        });
        assert.equal(status, 200, body);
      });

      await t.step("names outside ./supabase/functions still answer 404", async () => {
        const { status, body } = await fetchText(`${runtime.url}/echo`);
        assert.equal(status, 404);
        assert.equal(body, "Function not found");
      });
    });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

// Regression: config.toml paths are relative to config.toml's folder, as the Supabase CLI reads them.
Deno.test({
  name: "default main service resolves config.toml paths against the supabase folder",
  async fn() {
    const root = await writeProject({
      "supabase/config.toml": [
        "[functions.toml-entry]",
        'entrypoint = "./functions/toml-entry/main.ts"',
        "[functions.toml-static]",
        'static_files = ["./assets/*.txt"]',
        "",
      ].join("\n"),
      "supabase/functions/toml-entry/main.ts": 'Deno.serve(() => new Response("toml main"));\n',
      "supabase/functions/toml-static/index.ts": READER_SOURCE,
      "supabase/assets/a.txt": "a content",
    });
    try {
      await withRuntime({ cwd: root, env: { JWT_SECRET: "" } }, async (runtime) => {
        const entry = await fetchText(`${runtime.url}/toml-entry`);
        assert.equal(entry.status, 200, entry.body);
        assert.equal(entry.body, "toml main");
        const path = join(root, "supabase", "assets", "a.txt");
        const file = await fetchText(
          `${runtime.url}/toml-static?path=${encodeURIComponent(path)}`,
        );
        assert.equal(file.body, "a content");
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

// Regression: an entrypoint in a subfolder used to cut the worker off from its own folder and _shared.
Deno.test({
  name: "default main service lets a subfolder entrypoint import its function folder and _shared",
  async fn() {
    const root = await writeProject({
      "supabase/functions/_shared/shared.ts": 'export const shared = "shared+";\n',
      "supabase/functions/sub-entry/lib.ts": 'export const lib = "lib";\n',
      "supabase/functions/sub-entry/src/main.ts": [
        'import { shared } from "../../_shared/shared.ts";',
        'import { lib } from "../lib.ts";',
        "Deno.serve(() => new Response(shared + lib));",
        "",
      ].join("\n"),
      "supabase/functions/sub-entry/config.json": '{"entrypoint": "src/main.ts"}',
    });
    try {
      await withRuntime({ cwd: root, env: { JWT_SECRET: "" } }, async (runtime) => {
        const { status, body } = await fetchText(`${runtime.url}/sub-entry`);
        assert.equal(status, 200, body);
        assert.equal(body, "shared+lib");
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

// Regression: an unknown function is a 404 even when a JWT check would fail, as in the Supabase CLI.
Deno.test({
  name: "default main service answers 404 for an unknown function before checking the JWT",
  async fn() {
    const root = await writeProject({ "supabase/functions/hello/index.ts": ECHO_SOURCE });
    try {
      await withRuntime({ cwd: root, env: { JWT_SECRET: SECRET } }, async (runtime) => {
        for (const path of ["/no-such-function", "/functions/v1/no-such-function/x"]) {
          const { status, body } = await fetchText(`${runtime.url}${path}`);
          assert.equal(status, 404, path);
          assert.equal(body, "Function not found", path);
        }
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});
