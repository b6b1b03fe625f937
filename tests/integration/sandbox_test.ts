/**
 * Sandbox rules enforced at boot and inside the worker: read-only environment, symlinks that
 * leave the function refused.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fetchText, fixtureMain, FUNCTION_FIXTURES, waitFor, withRuntime } from "../test_utils.ts";

Deno.test("a function cannot change its environment (Deno.env.set throws NotSupported)", async () => {
  await withRuntime({ args: [`--main-service=${fixtureMain("supabase-api")}`] }, async (rt) => {
    const { status, body } = await fetchText(`${rt.url}/env-write`);
    assert.equal(status, 200);
    assert.deepEqual(JSON.parse(body), {
      set: "NotSupported: The operation is not supported",
      assigned: "NotSupported: The operation is not supported",
      injected: null,
      greetingAfterDelete: "hello from envVars",
    });
  });
});

Deno.test("symlinks that leave the function folder are refused at boot", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "sandbox_test_" });
  const outside = await Deno.makeTempDir({ prefix: "sandbox_secret_" });
  try {
    await Deno.writeTextFile(join(outside, "secret.txt"), "TOP-SECRET-VALUE");
    const serveFile = (name: string) =>
      `Deno.serve(async () => { try { return new Response(await Deno.readTextFile(new URL("./${name}", import.meta.url))); } catch (e) { return new Response(String(e)); } });\n`;
    await Deno.mkdir(join(dir, "escapes"));
    await Deno.writeTextFile(join(dir, "escapes", "index.ts"), serveFile("link.txt"));
    await Deno.symlink(join(outside, "secret.txt"), join(dir, "escapes", "link.txt"));
    await Deno.mkdir(join(dir, "escapes-deep", "a", "b"), { recursive: true });
    await Deno.writeTextFile(
      join(dir, "escapes-deep", "index.ts"),
      serveFile("a/b/dir/secret.txt"),
    );
    await Deno.symlink(outside, join(dir, "escapes-deep", "a", "b", "dir"));
    await Deno.mkdir(join(dir, "stays"));
    await Deno.writeTextFile(join(dir, "stays", "index.ts"), serveFile("link.txt"));
    await Deno.writeTextFile(join(dir, "stays", "real.txt"), "inside");
    await Deno.symlink(join(dir, "stays", "real.txt"), join(dir, "stays", "link.txt"));

    await withRuntime({ args: [`--functions=${dir}`] }, async (rt) => {
      for (const name of ["escapes", "escapes-deep"]) {
        await t.step(`${name}: 503 BOOT_ERROR, the secret never appears`, async () => {
          const { status, body } = await fetchText(`${rt.url}/${name}`);
          assert.equal(status, 503);
          assert.equal(JSON.parse(body).code, "BOOT_ERROR");
          assert.ok(!body.includes("TOP-SECRET"));
          assert.match(rt.stderr(), new RegExp(`symlink "[^"]+" in "${name}" points outside`));
          assert.ok(!rt.stderr().includes("TOP-SECRET"));
        });
      }
      await t.step("a symlink inside the function folder is fine", async () => {
        const { status, body } = await fetchText(`${rt.url}/stays`);
        assert.deepEqual([status, body], [200, "inside"]);
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});

/** Each attack fixture, and the error Deno's permissions give it. */
const DENIED_ATTACKS: [string, string][] = [
  ["attack-read-etc-passwd", "NotCapable"],
  ["attack-read-other-function", "NotCapable"],
  ["attack-import-other-function", "TypeError"],
  ["attack-fetch-file-url", "NotCapable"],
  ["attack-spawn-subprocess", "NotCapable"],
  ["attack-write-outside-tmp", "NotCapable"],
  ["attack-ffi-dlopen", "NotCapable"],
  ["attack-sys-info", "NotCapable"],
  ["attack-call-main-runtime", "NotCapable"],
  ["attack-call-localhost", "NotCapable"],
  ["attack-listen-port", "NotCapable"],
  ["attack-metadata-endpoint", "NotCapable"],
  ["attack-read-main-environ", "NotCapable"],
  ["attack-dynamic-json-import", "TypeError"],
  ["attack-write-own-folder", "NotCapable"],
  ["attack-list-socket-dir", "NotCapable"],
];

Deno.test("attacks on the host fail, and nothing they aimed at reaches a response or a log", async (t) => {
  await withRuntime({ args: [`--functions=${FUNCTION_FIXTURES}`] }, async (rt) => {
    for (const [name, error] of DENIED_ATTACKS) {
      await t.step(name, async () => {
        const { status, body } = await fetchText(`${rt.url}/${name}`);
        assert.equal(status, 200, body);
        assert.deepEqual(JSON.parse(body), { outcome: "denied", error });
      });
    }
    await t.step("attack-static-import-etc-passwd fails to boot", async () => {
      const { status, body } = await fetchText(`${rt.url}/attack-static-import-etc-passwd`);
      assert.equal(status, 503);
      assert.equal(JSON.parse(body).code, "BOOT_ERROR");
      assert.match(rt.stderr(), /Requires read access to "\/etc\/passwd"/);
    });
    await t.step("no host secret leaked anywhere", async () => {
      const passwd = await Deno.readTextFile("/etc/passwd");
      const firstLine = passwd.split("\n")[0];
      assert.ok(!rt.stderr().includes(firstLine), "a line of /etc/passwd reached the log");
      assert.ok(!(await Deno.stat("/tmp/edge-runtime-attack-was-here").catch(() => undefined)));
    });
  });
});

Deno.test("permissions.allow_net listing a host lifts the default network denials", async () => {
  await withRuntime({ args: [`--main-service=${fixtureMain("supabase-api")}`] }, async (rt) => {
    const denied = await fetchText(`${rt.url}/attack-call-main-runtime`);
    assert.deepEqual(JSON.parse(denied.body), { outcome: "denied", error: "NotCapable" });
    const allowed = await fetchText(`${rt.url}/attack-call-main-runtime`, {
      headers: { "x-allow-net": "127.0.0.1", "x-force-create": "true" },
    });
    assert.deepEqual(JSON.parse(allowed.body), { outcome: "allowed", result: "200" });
  });
});

Deno.test("a worker writes only in its private temp dir, which goes when the worker ends", async () => {
  await withRuntime({ args: [`--main-service=${fixtureMain("supabase-api")}`] }, async (rt) => {
    const { status, body } = await fetchText(`${rt.url}/private-temp`);
    assert.equal(status, 200, body);
    const seen = JSON.parse(body);
    assert.equal(seen.content, "kept for this worker only");
    assert.equal(seen.makeTempDirIsUnderTmpdir, true);
    assert.ok(seen.file.startsWith(seen.tmpdir + "/"));
    assert.match(seen.tmpdir, /\/edge-runtime-[^/]+\/[0-9a-f-]+\.tmp$/);
    assert.ok(await Deno.stat(seen.file).then(() => true, () => false), "file exists meanwhile");
    const cleanup = await fetchText(`${rt.url}/_internal/cleanup-idle-workers`);
    assert.equal(JSON.parse(cleanup.body).count, 1);
    await waitFor(
      () => Deno.stat(seen.tmpdir).then(() => false, () => true),
      5000,
      "the temp dir to be removed",
    );
  });
});

Deno.test("functions do not share localStorage", async () => {
  await withRuntime({ args: [`--functions=${FUNCTION_FIXTURES}`] }, async (rt) => {
    const wrote = await fetchText(`${rt.url}/storage-writer`);
    assert.deepEqual(JSON.parse(wrote.body), { stored: "written-by-storage-writer" });
    const read = await fetchText(`${rt.url}/storage-reader`);
    assert.deepEqual(JSON.parse(read.body), { seen: null });
  });
});
