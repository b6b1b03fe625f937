/**
 * Unit tests for `runtime/config.ts`: defaults, validation, the functions' environment and the
 * env-file parser. Pure: no file system, no environment.
 */

import assert from "node:assert/strict";
import {
  type HostFacts,
  parseEnvFile,
  resolveConfig,
  type RuntimeOptions,
} from "../../runtime/config.ts";
import { ConfigError } from "../../runtime/errors.ts";

const CWD = "/srv/app";

function facts(overrides: Partial<HostFacts> = {}): HostFacts {
  return { cwd: CWD, cpuCount: 4, env: {}, ...overrides };
}

/** Asserts that resolving `options` throws a ConfigError whose message names every `flags`. */
function assertConfigError(
  options: RuntimeOptions,
  flags: string[],
  hostFacts: HostFacts = facts(),
): ConfigError {
  let caught: unknown;
  try {
    resolveConfig(options, hostFacts);
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError, got ${String(caught)}`);
  assert.equal(caught.name, "ConfigError");
  for (const flag of flags) {
    assert.ok(
      caught.message.includes(flag),
      `message "${caught.message}" should name ${flag}`,
    );
  }
  return caught;
}

Deno.test("resolveConfig() applies every default to empty options", () => {
  const config = resolveConfig({}, facts());
  assert.equal(config.port, 9000);
  assert.equal(config.hostname, "0.0.0.0");
  assert.equal(config.policy, "per_worker");
  assert.equal(config.maxParallelism, 4);
  assert.equal(config.requestWaitTimeoutMs, 10_000);
  assert.equal(config.gracefulExitTimeoutMs, 15_000);
  assert.deepEqual(config.beforeunloadRatios, { wallClock: 90, cpu: 90, memory: 90 });
  assert.equal(config.mainServicePath, undefined);
  assert.equal(config.functionsPath, `${CWD}/functions`);
  assert.equal(config.eventWorkerPath, undefined);
  assert.equal(config.mainWorkerRequestIdleTimeoutMs, undefined);
  assert.equal(config.userWorkerRequestIdleTimeoutMs, undefined);
  assert.equal(config.requestReadTimeoutMs, undefined);
  assert.deepEqual(config.staticPatterns, []);
  assert.equal(config.inspect, undefined);
  assert.equal(config.watch, false);
  assert.equal(config.logLevel, "info");
  assert.equal(config.cwd, CWD);
  assert.deepEqual(config.functionEnv, []);
});

Deno.test("resolveConfig() returns a frozen configuration", () => {
  const config = resolveConfig({ static: ["a/*"] }, facts());
  assert.ok(Object.isFrozen(config));
  assert.ok(Object.isFrozen(config.beforeunloadRatios));
  assert.ok(Object.isFrozen(config.staticPatterns));
  assert.ok(Object.isFrozen(config.functionEnv));
});

Deno.test("resolveConfig() reads the port from EDGE_RUNTIME_PORT", () => {
  const config = resolveConfig({}, facts({ env: { EDGE_RUNTIME_PORT: "8123" } }));
  assert.equal(config.port, 8123);
});

Deno.test("resolveConfig() prefers --port over EDGE_RUNTIME_PORT", () => {
  const config = resolveConfig({ port: "7000" }, facts({ env: { EDGE_RUNTIME_PORT: "8123" } }));
  assert.equal(config.port, 7000);
});

Deno.test("resolveConfig() accepts port 0 for an ephemeral port", () => {
  assert.equal(resolveConfig({ port: "0" }, facts()).port, 0);
});

Deno.test("resolveConfig() accepts IPv4 and IPv6 addresses for --ip", async (t) => {
  for (const ip of ["127.0.0.1", "0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1"]) {
    await t.step(ip, () => {
      assert.equal(resolveConfig({ ip }, facts()).hostname, ip);
    });
  }
});

Deno.test("resolveConfig() uses the CPU count as the default maxParallelism", () => {
  assert.equal(resolveConfig({}, facts({ cpuCount: 12 })).maxParallelism, 12);
  assert.equal(resolveConfig({}, facts({ cpuCount: 0 })).maxParallelism, 1);
  assert.equal(resolveConfig({ maxParallelism: "3" }, facts()).maxParallelism, 3);
});

Deno.test("resolveConfig() forces maxParallelism to 1 under the oneshot policy", () => {
  assert.equal(resolveConfig({ policy: "oneshot" }, facts({ cpuCount: 8 })).maxParallelism, 1);
  const config = resolveConfig({ policy: "oneshot", maxParallelism: "6" }, facts());
  assert.equal(config.policy, "oneshot");
  assert.equal(config.maxParallelism, 1);
});

Deno.test("resolveConfig() accepts every policy", async (t) => {
  for (const policy of ["per_worker", "per_request", "oneshot"] as const) {
    await t.step(policy, () => {
      assert.equal(resolveConfig({ policy }, facts()).policy, policy);
    });
  }
});

Deno.test("resolveConfig() converts timeouts and ratios to numbers", () => {
  const config = resolveConfig({
    requestWaitTimeout: "250",
    mainWorkerRequestIdleTimeout: "1000",
    userWorkerRequestIdleTimeout: "2000",
    requestReadTimeout: "0",
    gracefulExitTimeout: "3",
    dispatchBeforeunloadWallClockRatio: "50",
    dispatchBeforeunloadCpuRatio: "0",
    dispatchBeforeunloadMemoryRatio: "99",
  }, facts());
  assert.equal(config.requestWaitTimeoutMs, 250);
  assert.equal(config.mainWorkerRequestIdleTimeoutMs, 1000);
  assert.equal(config.userWorkerRequestIdleTimeoutMs, 2000);
  assert.equal(config.requestReadTimeoutMs, 0);
  assert.equal(config.gracefulExitTimeoutMs, 3000);
  assert.deepEqual(config.beforeunloadRatios, { wallClock: 50, cpu: 0, memory: 99 });
});

Deno.test("resolveConfig() resolves relative paths against cwd and keeps absolute ones", () => {
  const config = resolveConfig({
    mainService: "./main",
    functions: "/opt/functions",
    eventWorker: "events",
  }, facts());
  assert.equal(config.mainServicePath, `${CWD}/main`);
  assert.equal(config.functionsPath, "/opt/functions");
  assert.equal(config.eventWorkerPath, `${CWD}/events`);
});

Deno.test("resolveConfig() maps --verbose and --quiet to a log level", () => {
  assert.equal(resolveConfig({ verbose: true }, facts()).logLevel, "debug");
  assert.equal(resolveConfig({ quiet: true }, facts()).logLevel, "quiet");
});

Deno.test("resolveConfig() accepts a HOST:PORT --inspect address", async (t) => {
  for (const inspect of ["127.0.0.1:9229", "0.0.0.0:9229", "localhost:9229", "[::1]:9229"]) {
    await t.step(inspect, () => {
      assert.equal(resolveConfig({ inspect }, facts()).inspect, inspect);
    });
  }
});

Deno.test("resolveConfig() picks the module cache directory from the environment", () => {
  const { denoDir: fromDenoDir } = resolveConfig(
    {},
    facts({ env: { DENO_DIR: "cache", XDG_CACHE_HOME: "/xdg", HOME: "/home/u" } }),
  );
  assert.equal(fromDenoDir, `${CWD}/cache`);
  const { denoDir: fromXdg } = resolveConfig(
    {},
    facts({ env: { XDG_CACHE_HOME: "/xdg", HOME: "/home/u" } }),
  );
  assert.equal(fromXdg, "/xdg/deno");
  const { denoDir: fromHome } = resolveConfig({}, facts({ env: { HOME: "/home/u" } }));
  assert.equal(fromHome, "/home/u/.cache/deno");
  assert.equal(resolveConfig({}, facts()).denoDir, `${CWD}/.deno`);
});

Deno.test("resolveConfig() throws ConfigError naming the flag on a bad value", async (t) => {
  const cases: {
    name: string;
    options: RuntimeOptions;
    flags: string[];
    env?: Record<string, string>;
  }[] = [
    { name: 'port "abc"', options: { port: "abc" }, flags: ["--port", '"abc"'] },
    { name: "port 70000", options: { port: "70000" }, flags: ["--port", '"70000"'] },
    { name: "port -1", options: { port: "-1" }, flags: ["--port"] },
    { name: "port 1.5", options: { port: "1.5" }, flags: ["--port"] },
    { name: "empty port", options: { port: "" }, flags: ["--port"] },
    {
      name: 'EDGE_RUNTIME_PORT "abc"',
      options: {},
      env: { EDGE_RUNTIME_PORT: "abc" },
      flags: ["--port", '"abc"'],
    },
    { name: "ip localhost", options: { ip: "localhost" }, flags: ["--ip", '"localhost"'] },
    { name: "ip 256.0.0.1", options: { ip: "256.0.0.1" }, flags: ["--ip"] },
    { name: "ip 1.2.3", options: { ip: "1.2.3" }, flags: ["--ip"] },
    { name: "empty ip", options: { ip: "" }, flags: ["--ip"] },
    { name: "policy pooled", options: { policy: "pooled" }, flags: ["--policy", '"pooled"'] },
    { name: "max parallelism 0", options: { maxParallelism: "0" }, flags: ["--max-parallelism"] },
    {
      name: "negative request wait timeout",
      options: { requestWaitTimeout: "-5" },
      flags: ["--request-wait-timeout", '"-5"'],
    },
    {
      name: "non-integer request wait timeout",
      options: { requestWaitTimeout: "1.5" },
      flags: ["--request-wait-timeout"],
    },
    {
      name: "negative main worker idle timeout",
      options: { mainWorkerRequestIdleTimeout: "-1" },
      flags: ["--main-worker-request-idle-timeout"],
    },
    {
      name: "non-integer user worker idle timeout",
      options: { userWorkerRequestIdleTimeout: "2.5" },
      flags: ["--user-worker-request-idle-timeout"],
    },
    {
      name: "text request read timeout",
      options: { requestReadTimeout: "soon" },
      flags: ["--request-read-timeout"],
    },
    {
      name: "timeout above 2^31-1",
      options: { requestWaitTimeout: String(2 ** 31) },
      flags: ["--request-wait-timeout"],
    },
    {
      name: "negative graceful exit timeout",
      options: { gracefulExitTimeout: "-1" },
      flags: ["--graceful-exit-timeout"],
    },
    {
      name: "non-integer graceful exit timeout",
      options: { gracefulExitTimeout: "0.5" },
      flags: ["--graceful-exit-timeout"],
    },
    {
      name: "wall clock ratio 100",
      options: { dispatchBeforeunloadWallClockRatio: "100" },
      flags: ["--dispatch-beforeunload-wall-clock-ratio", '"100"'],
    },
    {
      name: "cpu ratio 100",
      options: { dispatchBeforeunloadCpuRatio: "100" },
      flags: ["--dispatch-beforeunload-cpu-ratio"],
    },
    {
      name: "memory ratio 100",
      options: { dispatchBeforeunloadMemoryRatio: "100" },
      flags: ["--dispatch-beforeunload-memory-ratio"],
    },
    {
      name: "verbose and quiet",
      options: { verbose: true, quiet: true },
      flags: ["--verbose", "--quiet"],
    },
    { name: "inspect without port", options: { inspect: "127.0.0.1" }, flags: ["--inspect"] },
    { name: "inspect text port", options: { inspect: "host:abc" }, flags: ["--inspect"] },
    { name: "inspect empty port", options: { inspect: "host:" }, flags: ["--inspect"] },
    { name: "inspect with space", options: { inspect: "a b:1" }, flags: ["--inspect"] },
  ];
  for (const { name, options, flags, env } of cases) {
    await t.step(name, () => {
      assertConfigError(options, flags, facts({ env: env ?? {} }));
    });
  }
});

// Regression: the IPv6 check accepted any mix of hex digits, dots and colons, so a HOST:PORT given
// by mistake passed and failed only at bind time, with a URIError instead of a ConfigError.
Deno.test("resolveConfig() throws ConfigError on a malformed IPv6 or HOST:PORT --ip", async (t) => {
  for (const ip of ["127.0.0.1:9000", ":", "1::2::3", "12345::1", "1:2:3:4:5:6:7:8:9"]) {
    await t.step(ip, () => {
      assertConfigError({ ip }, ["--ip"]);
    });
  }
});

Deno.test("resolveConfig() names the env file in a parse error", () => {
  const error = assertConfigError(
    { envFile: ".env.local" },
    [".env.local", "line 2"],
    facts({ envFileText: "A=1\nnot a pair\n" }),
  );
  assert.match(error.message, /expected NAME=value/);
});

Deno.test("resolveConfig() hides runtime and system variables from functionEnv", () => {
  const config = resolveConfig(
    {},
    facts({
      env: {
        HOME: "/home/u",
        HOSTNAME: "box",
        PATH: "/usr/bin",
        PWD: "/srv",
        EDGE_RUNTIME_PORT: "9000",
        EDGE_RUNTIME_ANYTHING: "x",
        SUPABASE_INTERNAL_TOKEN: "secret",
        SUPABASE_URL: "http://db",
        FOO: "1",
      },
    }),
  );
  assert.deepEqual(config.functionEnv, [["SUPABASE_URL", "http://db"], ["FOO", "1"]]);
});

Deno.test("resolveConfig() adds env file pairs to functionEnv, overriding the environment", () => {
  const config = resolveConfig(
    { envFile: ".env" },
    facts({
      env: { FOO: "from-env", KEEP: "k", PATH: "/bin" },
      envFileText: "FOO=from-file\nBAR=2\n",
    }),
  );
  assert.deepEqual(config.functionEnv, [["FOO", "from-file"], ["KEEP", "k"], ["BAR", "2"]]);
});

Deno.test("resolveConfig() keeps env file pairs even with a hidden name", () => {
  const config = resolveConfig({}, facts({ env: {}, envFileText: "PATH=/custom\n" }));
  assert.deepEqual(config.functionEnv, [["PATH", "/custom"]]);
});

Deno.test("parseEnvFile() reads NAME=value lines", () => {
  const text = [
    "# a comment",
    "",
    "   ",
    "PLAIN=value",
    "export EXPORTED=yes",
    "SPACED = around ",
    'DOUBLE="two words"',
    "SINGLE='single # not a comment'",
    'NEWLINE="a\\nb"',
    "RAW_NEWLINE='a\\nb'",
    "TRAILING=value # comment",
    "HASH=a#b",
    "EQUALS=a=b=c",
    "EMPTY=",
    'EMPTY_QUOTED=""',
    "_UNDER_1=u",
  ].join("\n");
  assert.deepEqual(parseEnvFile(text), [
    ["PLAIN", "value"],
    ["EXPORTED", "yes"],
    ["SPACED", "around"],
    ["DOUBLE", "two words"],
    ["SINGLE", "single # not a comment"],
    ["NEWLINE", "a\nb"],
    ["RAW_NEWLINE", "a\\nb"],
    ["TRAILING", "value"],
    ["HASH", "a#b"],
    ["EQUALS", "a=b=c"],
    ["EMPTY", ""],
    ["EMPTY_QUOTED", ""],
    ["_UNDER_1", "u"],
  ]);
});

Deno.test("parseEnvFile() accepts CRLF line endings", () => {
  assert.deepEqual(parseEnvFile("A=1\r\nB=2\r\n"), [["A", "1"], ["B", "2"]]);
});

Deno.test("parseEnvFile() keeps a lone quote character as the value", () => {
  assert.deepEqual(parseEnvFile('Q="'), [["Q", '"']]);
});

Deno.test("parseEnvFile() throws ConfigError with the line number on a bad line", async (t) => {
  const cases = [
    { name: "no equals sign", text: "A=1\nnot a pair", line: 2 },
    { name: "name starting with a digit", text: "1A=x", line: 1 },
    { name: "name with a dash", text: "# c\n\nA-B=x", line: 3 },
    { name: "empty name", text: "=x", line: 1 },
  ];
  for (const { name, text, line } of cases) {
    await t.step(name, () => {
      assert.throws(
        () => parseEnvFile(text, "my.env"),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.message === `Cannot parse line ${line} of my.env: expected NAME=value`,
      );
    });
  }
});

Deno.test('parseEnvFile() calls the source "env file" by default', () => {
  assert.throws(() => parseEnvFile("oops"), /of env file:/);
});

// Regression: a quoted value followed by a comment kept its quotes (`A="x" # note` gave `"x"`),
// unlike std/dotenv and godotenv (used by the Supabase CLI).
Deno.test("parseEnvFile() strips the quotes of a quoted value followed by a comment", () => {
  assert.deepEqual(parseEnvFile("A=\"x\" # note\nB='y' # note"), [["A", "x"], ["B", "y"]]);
});

Deno.test("resolveConfig() takes the built-in main service's limits from flags, then env", async (t) => {
  const facts = (env: Record<string, string> = {}) => ({ cwd: "/", cpuCount: 2, env });
  await t.step("defaults are Supabase's", () => {
    assert.deepEqual(resolveConfig({}, facts()).functionLimits, {
      memoryLimitMb: 256,
      workerTimeoutMs: 400_000,
      cpuTimeSoftLimitMs: 1000,
      cpuTimeHardLimitMs: 2000,
    });
  });
  await t.step("env, and flags over env", () => {
    const env = {
      EDGE_RUNTIME_MEMORY_LIMIT_MB: "64",
      EDGE_RUNTIME_WORKER_TIMEOUT_MS: "5000",
      EDGE_RUNTIME_CPU_TIME_SOFT_LIMIT_MS: "100",
      EDGE_RUNTIME_CPU_TIME_HARD_LIMIT_MS: "200",
    };
    assert.deepEqual(resolveConfig({}, facts(env)).functionLimits, {
      memoryLimitMb: 64,
      workerTimeoutMs: 5000,
      cpuTimeSoftLimitMs: 100,
      cpuTimeHardLimitMs: 200,
    });
    const flags = { memoryLimitMb: "32", cpuTimeHardLimitMs: "0" };
    const limits = resolveConfig(flags, facts(env)).functionLimits;
    assert.equal(limits.memoryLimitMb, 32);
    assert.equal(limits.cpuTimeHardLimitMs, 0);
  });
  await t.step("the Supabase CLI's wall-clock variable is in seconds", () => {
    const env = { SUPABASE_INTERNAL_WALLCLOCK_LIMIT_SEC: "30" };
    assert.equal(resolveConfig({}, facts(env)).functionLimits.workerTimeoutMs, 30_000);
  });
  await t.step("bad values name the flag", () => {
    assert.throws(() => resolveConfig({ memoryLimitMb: "0" }, facts()), /--memory-limit-mb/);
    assert.throws(() => resolveConfig({ workerTimeoutMs: "soon" }, facts()), /--worker-timeout-ms/);
  });
});
