/**
 * `main.ts smoke` as CI runs it: exit codes, the report lines and summary, and JUnit XML.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "../test_utils.ts";

interface SmokeRun {
  code: number;
  stdout: string;
  stderr: string;
}

async function smoke(args: string[]): Promise<SmokeRun> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "--unstable-no-legacy-abort", `${ROOT}main.ts`, "smoke", ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(30_000),
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

async function writeFunctions(dir: string, files: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(files)) {
    await Deno.mkdir(join(dir, path, ".."), { recursive: true });
    await Deno.writeTextFile(join(dir, path), text);
  }
}

Deno.test("main.ts smoke passes when every case passes and writes JUnit XML", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke_test_" });
  try {
    await writeFunctions(dir, {
      "greet/index.ts":
        `Deno.serve(async (req) => Response.json({ hello: req.method === "POST" ? (await req.json()).name : "world", extra: 1 }));`,
      "greet/smoke.json": JSON.stringify([
        { name: "says hello", json: { hello: "world" } },
        {
          name: "greets by name",
          method: "POST",
          body: { name: "ci" },
          status: 200,
          json: { hello: "ci" },
        },
        { path: "/greet/sub?x=1", bodyIncludes: "world" },
      ]),
      "plain/index.ts": `export default { fetch: () => new Response("fine", { status: 404 }) };`,
      "_shared/util.ts": `export const x = 1;`,
    });
    const junit = join(dir, "report.xml");
    const run = await smoke([`--functions=${dir}`, `--junit=${junit}`]);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    const lines = run.stdout.trim().split("\n");
    assert.deepEqual(lines.map((l) => l.split(" (")[0]), [
      "ok   greet › says hello",
      "ok   greet › greets by name",
      "ok   greet › GET /greet/sub?x=1",
      "ok   plain › GET /plain",
      "4 passed, 0 failed",
    ]);
    const xml = await Deno.readTextFile(junit);
    assert.match(xml, /<testsuites [^>]*tests="4" failures="0">/);
    assert.equal(xml.match(/<testcase /g)?.length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts smoke exits 1 and reports each failing case", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke_test_" });
  try {
    await writeFunctions(dir, {
      "broken/index.ts": `throw new Error("fails at load");`,
      "wrong/index.ts": `Deno.serve(() => Response.json({ ok: false }));`,
      "wrong/smoke.json": JSON.stringify({ name: "is ok", json: { ok: true } }),
    });
    const junit = join(dir, "report.xml");
    const run = await smoke([`--functions=${dir}`, `--junit=${junit}`]);
    assert.equal(run.code, 1);
    assert.match(
      run.stdout,
      /^FAIL broken › GET \/broken \(\d+ ms\): expected a status below 500, got 500/m,
    );
    assert.match(run.stdout, /^FAIL wrong › is ok \(\d+ ms\): JSON \{"ok":false\} does not match/m);
    assert.match(run.stdout, /^0 passed, 2 failed$/m);
    const xml = await Deno.readTextFile(junit);
    assert.match(xml, /<testsuites [^>]*tests="2" failures="2">/);
    assert.equal(xml.match(/<failure /g)?.length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main.ts smoke runs only the functions named, and refuses unknown ones", async () => {
  const dir = await Deno.makeTempDir({ prefix: "smoke_test_" });
  try {
    await writeFunctions(dir, {
      "a/index.ts": `Deno.serve(() => new Response("a"));`,
      "b/index.ts": `throw new Error("not checked");`,
    });
    const onlyA = await smoke([`--functions=${dir}`, "a"]);
    assert.equal(onlyA.code, 0, onlyA.stdout + onlyA.stderr);
    assert.match(onlyA.stdout, /^1 passed, 0 failed$/m);
    const unknown = await smoke([`--functions=${dir}`, "nope"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /Function "nope" not found/);
    const badTimeout = await smoke([`--functions=${dir}`, "--timeout=soon"]);
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.stderr, /--timeout/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the shipped example functions pass their own smoke cases", async () => {
  const run = await smoke([`--functions=${ROOT}functions`]);
  assert.equal(run.code, 0, run.stdout + run.stderr);
  assert.match(run.stdout, /^\d+ passed, 0 failed$/m);
});
