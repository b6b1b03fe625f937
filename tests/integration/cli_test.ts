/**
 * The command line of `main.ts` (DESIGN §3): help, version, usage errors (exit 2, one `error:` line
 * and the usage hint), and start-up failures (exit 1) that must end the process, not hang it.
 */

import assert from "node:assert/strict";
import { ROOT, runtimeCommandArgs } from "../test_utils.ts";

/** `deno run ... main.ts`, without the `start --port=0 --ip=...` that runtimeCommandArgs adds. */
const RUN_MAIN = runtimeCommandArgs([]).slice(0, runtimeCommandArgs([]).indexOf("start"));

/** Longest a CLI run may take before the test calls it a hang. */
const CLI_TIMEOUT_MS = 10_000;

interface CliResult {
  code: number;
  signal: Deno.Signal | null;
  stdout: string;
  stderr: string;
}

/** Runs `main.ts <args>` to completion, both pipes drained, killed if it outlives the timeout. */
async function runCli(args: string[], env?: Record<string, string>): Promise<CliResult> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), CLI_TIMEOUT_MS);
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: [...RUN_MAIN, ...args],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: controller.signal,
    }).output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      signal: output.signal,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** Asserts a usage error: exit 2, `error: <reason>` then the usage hint, nothing on stdout. */
function assertUsageError(result: CliResult, mentions: string[]): void {
  const context = JSON.stringify(result);
  assert.equal(result.signal, null, `killed (hung?): ${context}`);
  assert.equal(result.code, 2, context);
  assert.equal(result.stdout, "", context);
  const lines = result.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 2, context);
  assert.match(lines[0], /^error: \S/, context);
  assert.match(lines[1], /--help/, context);
  for (const text of mentions) assert.ok(lines[0].includes(text), `"${text}" missing: ${context}`);
}

Deno.test("main.ts --help and --version print to stdout and exit 0", async (t) => {
  for (const flag of ["--help", "-h"]) {
    await t.step(`start ${flag} prints the usage`, async () => {
      const result = await runCli(["start", flag]);
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^Usage: main\.ts start \[options\]/);
      for (const option of ["--port", "--main-service", "--functions", "--policy"]) {
        assert.ok(result.stdout.includes(option), option);
      }
      assert.equal(result.stderr, "");
    });
  }
  await t.step("--version prints the version", async () => {
    const result = await runCli(["--version"]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^edge-runtime \d+\.\d+\.\d+\n/);
    assert.equal(result.stderr, "");
  });
});

Deno.test("main.ts exits 2 with one error line and the usage hint on bad usage", async (t) => {
  const cases: {
    name: string;
    args: string[];
    env?: Record<string, string>;
    mentions: string[];
  }[] = [
    { name: "unknown flag", args: ["start", "--nope"], mentions: ["--nope"] },
    { name: "non-numeric port", args: ["start", "--port=abc"], mentions: ["--port", "abc"] },
    { name: "port out of range", args: ["start", "--port=70000"], mentions: ["--port", "70000"] },
    {
      name: "non-numeric EDGE_RUNTIME_PORT",
      args: ["start"],
      env: { EDGE_RUNTIME_PORT: "abc" },
      mentions: ["abc"],
    },
    { name: "unknown policy", args: ["start", "--policy=bogus"], mentions: ["--policy", "bogus"] },
    {
      name: "zero parallelism",
      args: ["start", "--max-parallelism=0"],
      mentions: ["--max-parallelism"],
    },
    {
      name: "negative wait timeout",
      args: ["start", "--request-wait-timeout=-5"],
      mentions: ["--request-wait-timeout", "-5"],
    },
    { name: "missing command", args: [], mentions: ["command", "start"] },
    { name: "unknown command", args: ["stop"], mentions: ["stop"] },
  ];
  for (const { name, args, env, mentions } of cases) {
    await t.step(`${name}: ${args.join(" ") || "(no arguments)"}`, async () => {
      assertUsageError(await runCli(args, env), mentions);
    });
  }
});

Deno.test("main.ts exits 1 with a clear message when it cannot start", async (t) => {
  await t.step("a --main-service folder without an entry module", async () => {
    const dir = await Deno.makeTempDir({ prefix: "cli-empty-main-" });
    try {
      const result = await runCli(["start", "--port=0", "--ip=127.0.0.1", `--main-service=${dir}`]);
      const context = JSON.stringify(result);
      assert.equal(result.signal, null, `killed (hung?): ${context}`);
      assert.equal(result.code, 1, context);
      assert.ok(!result.stdout.includes("Listening"), context);
      assert.match(result.stderr, /^error: /m, context);
      assert.ok(result.stderr.includes(dir), `the folder is not named: ${context}`);
      assert.match(result.stderr, /index\.ts/, context);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  await t.step("a port that is already in use", async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const started = performance.now();
    const result = await runCli([
      "start",
      "--ip=127.0.0.1",
      `--port=${listener.addr.port}`,
      `--functions=${ROOT}tests/fixtures/functions`,
    ]);
    const context = JSON.stringify(result);
    assert.equal(result.signal, null, `killed (hung?): ${context}`);
    assert.notEqual(result.code, 0, context);
    assert.ok(performance.now() - started < 5000, `took ${performance.now() - started} ms`);
    assert.ok(!result.stdout.includes("Listening"), context);
    assert.match(result.stderr, /^error: .*address already in use/im, context);
  });
});
