/**
 * Unit tests for `runtime/permissions.ts`: the `deno run` command line and environment of a worker.
 */

import assert from "node:assert/strict";
import {
  denyNetEntry,
  planWorkerLaunch,
  type WorkerLaunchInput,
} from "../../runtime/permissions.ts";

const SOCKET = "/tmp/edge-xyz/w1.sock";
const TEMP = "/tmp/edge-xyz/w1.tmp";
const BOOTSTRAP = "/app/workers/bootstrap.ts";

function input(overrides: Partial<WorkerLaunchInput> = {}): WorkerLaunchInput {
  return {
    bootstrapPath: BOOTSTRAP,
    socketPath: SOCKET,
    tempDir: TEMP,
    readPaths: ["/app/functions/hello", "/cache/deno"],
    envVars: [["FOO", "1"], ["SUPABASE_URL", "http://db"]],
    executionId: "exec-123",
    memoryLimitMb: 150,
    location: "http://hello.functions.local",
    denoDir: "/cache/deno",
    ...overrides,
  };
}

/** The value of `--name=value` in `args`, or undefined when absent. */
function flagValue(args: string[], name: string): string | undefined {
  const found = args.find((arg) => arg.startsWith(`${name}=`));
  return found?.slice(name.length + 1);
}

Deno.test("planWorkerLaunch() starts with run and never prompts", () => {
  const { args } = planWorkerLaunch(input());
  assert.equal(args[0], "run");
  assert.ok(args.includes("--no-prompt"));
  assert.ok(args.includes("--no-lock"));
});

Deno.test("planWorkerLaunch() puts the bootstrap path last", () => {
  for (
    const overrides of [
      {},
      { configPath: "/app/functions/hello/deno.json", inspect: "127.0.0.1:9229" },
      { permissions: { allow_net: ["example.com"], deny_net: ["10.0.0.1"] } },
    ]
  ) {
    const { args } = planWorkerLaunch(input(overrides));
    assert.equal(args.at(-1), BOOTSTRAP);
    assert.equal(args.indexOf(BOOTSTRAP), args.length - 1);
  }
});

Deno.test("planWorkerLaunch() lets the worker read its paths, its socket and its temp dir", () => {
  const { args } = planWorkerLaunch(input());
  assert.equal(
    flagValue(args, "--allow-read"),
    `/app/functions/hello,/cache/deno,${SOCKET},${TEMP}`,
  );
});

Deno.test("planWorkerLaunch() lists each read path once", () => {
  const { args } = planWorkerLaunch(input({ readPaths: ["/a", "/a", SOCKET] }));
  assert.equal(flagValue(args, "--allow-read"), `/a,${SOCKET},${TEMP}`);
});

Deno.test("planWorkerLaunch() lets the worker write only its socket and its private temp dir", () => {
  const { args } = planWorkerLaunch(input());
  const writes = args.filter((arg) => arg.startsWith("--allow-write"));
  assert.deepEqual(writes, [`--allow-write=${SOCKET},${TEMP}`]);
});

Deno.test("planWorkerLaunch() sets the V8 heap limit from memoryLimitMb", () => {
  const { args } = planWorkerLaunch(input({ memoryLimitMb: 32 }));
  assert.ok(args.includes("--v8-flags=--max-old-space-size=32"));
});

Deno.test("planWorkerLaunch() sets --location", () => {
  const { args } = planWorkerLaunch(input());
  assert.equal(flagValue(args, "--location"), "http://hello.functions.local");
});

Deno.test("planWorkerLaunch() uses --no-config unless the function has a config", () => {
  const without = planWorkerLaunch(input()).args;
  assert.ok(without.includes("--no-config"));
  assert.equal(flagValue(without, "--config"), undefined);
  const withConfig = planWorkerLaunch(input({ configPath: "/fn/deno.jsonc" })).args;
  assert.equal(flagValue(withConfig, "--config"), "/fn/deno.jsonc");
  assert.ok(!withConfig.includes("--no-config"));
});

Deno.test("planWorkerLaunch() passes the import map", () => {
  assert.equal(flagValue(planWorkerLaunch(input()).args, "--import-map"), undefined);
  const { args } = planWorkerLaunch(input({ importMapPath: "data:application/json,{}" }));
  assert.equal(flagValue(args, "--import-map"), "data:application/json,{}");
});

Deno.test("planWorkerLaunch() maps module cache options to flags", async (t) => {
  const cases: {
    name: string;
    overrides: Partial<WorkerLaunchInput>;
    present: string[];
    absent: string[];
  }[] = [
    {
      name: "defaults",
      overrides: {},
      present: [],
      absent: ["--reload", "--no-npm", "--cached-only"],
    },
    {
      name: "noModuleCache",
      overrides: { noModuleCache: true },
      present: ["--reload"],
      absent: [],
    },
    { name: "noNpm", overrides: { noNpm: true }, present: ["--no-npm"], absent: [] },
    {
      name: "allowRemoteModules false",
      overrides: { allowRemoteModules: false },
      present: ["--cached-only"],
      absent: [],
    },
    {
      name: "allowRemoteModules true",
      overrides: { allowRemoteModules: true },
      present: [],
      absent: ["--cached-only"],
    },
  ];
  for (const { name, overrides, present, absent } of cases) {
    await t.step(name, () => {
      const { args } = planWorkerLaunch(input(overrides));
      for (const flag of present) assert.ok(args.includes(flag), `${flag} expected`);
      for (const flag of absent) assert.ok(!args.includes(flag), `${flag} unexpected`);
    });
  }
});

Deno.test("planWorkerLaunch() opens the inspector only when asked", () => {
  assert.ok(!planWorkerLaunch(input()).args.some((arg) => arg.startsWith("--inspect")));
  const { args } = planWorkerLaunch(input({ inspect: "127.0.0.1:9230" }));
  assert.equal(flagValue(args, "--inspect"), "127.0.0.1:9230");
});

Deno.test("planWorkerLaunch() maps network permissions", async (t) => {
  await t.step("absent allows every host", () => {
    const { args } = planWorkerLaunch(input());
    assert.ok(args.includes("--allow-net"));
    assert.ok(!args.some((arg) => arg.startsWith("--deny-net")));
  });
  await t.step("empty allow_net allows every host", () => {
    const { args } = planWorkerLaunch(input({ permissions: { allow_net: [] } }));
    assert.ok(args.includes("--allow-net"));
  });
  await t.step("null allow_net allows every host", () => {
    const { args } = planWorkerLaunch(input({ permissions: { allow_net: null, deny_net: null } }));
    assert.ok(args.includes("--allow-net"));
    assert.ok(!args.some((arg) => arg.startsWith("--deny-net")));
  });
  await t.step("allow_net list adds the worker socket", () => {
    const { args } = planWorkerLaunch(
      input({ permissions: { allow_net: ["example.com", "10.0.0.1:5432"] } }),
    );
    assert.ok(!args.includes("--allow-net"));
    assert.equal(flagValue(args, "--allow-net"), `example.com,10.0.0.1:5432,unix:${SOCKET}`);
  });
  await t.step("deny_net becomes --deny-net", () => {
    const { args } = planWorkerLaunch(
      input({ permissions: { deny_net: ["169.254.169.254", "internal.local"] } }),
    );
    assert.ok(args.includes("--allow-net"));
    assert.equal(flagValue(args, "--deny-net"), "169.254.169.254,internal.local");
  });
});

Deno.test("planWorkerLaunch() never grants run, ffi, sys or all permissions", () => {
  const variants: Partial<WorkerLaunchInput>[] = [
    {},
    { permissions: { allow_net: ["a.com"], deny_net: ["b.com"] } },
    { noModuleCache: true, noNpm: true, allowRemoteModules: false, inspect: "127.0.0.1:1" },
    { configPath: "/fn/deno.json", importMapPath: "/fn/import_map.json" },
  ];
  const forbidden = /^(-A|--allow-all|--allow-run|--allow-ffi|--allow-sys|--allow-hrtime)(=|$)/;
  for (const overrides of variants) {
    const { args } = planWorkerLaunch(input(overrides));
    for (const arg of args) assert.ok(!forbidden.test(arg), `unexpected ${arg}`);
  }
});

Deno.test("planWorkerLaunch() gives the function's env vars plus SB_EXECUTION_ID and plumbing", () => {
  const { env } = planWorkerLaunch(input());
  assert.deepEqual(env, {
    FOO: "1",
    SUPABASE_URL: "http://db",
    SB_EXECUTION_ID: "exec-123",
    TMPDIR: TEMP,
    DENO_DIR: "/cache/deno",
    NO_COLOR: "1",
    DENO_NO_UPDATE_CHECK: "1",
  });
});

Deno.test("planWorkerLaunch() lets the function's own env vars win over plumbing", () => {
  const { env, visibleEnvNames } = planWorkerLaunch(
    input({ envVars: [["NO_COLOR", "0"], ["DENO_DIR", "/mine"]] }),
  );
  assert.equal(env.NO_COLOR, "0");
  assert.equal(env.DENO_DIR, "/mine");
  assert.deepEqual(visibleEnvNames, ["NO_COLOR", "DENO_DIR", "SB_EXECUTION_ID", "TMPDIR"]);
});

Deno.test("planWorkerLaunch() lets only the function's env var names be visible", () => {
  const { visibleEnvNames } = planWorkerLaunch(input());
  assert.deepEqual(visibleEnvNames, ["FOO", "SUPABASE_URL", "SB_EXECUTION_ID", "TMPDIR"]);
  const empty = planWorkerLaunch(input({ envVars: [] }));
  assert.deepEqual(empty.visibleEnvNames, ["SB_EXECUTION_ID", "TMPDIR"]);
});

Deno.test("planWorkerLaunch() sets SB_EXECUTION_ID even when envVars has one", () => {
  const { env, visibleEnvNames } = planWorkerLaunch(
    input({ envVars: [["SB_EXECUTION_ID", "spoofed"]] }),
  );
  assert.equal(env.SB_EXECUTION_ID, "exec-123");
  assert.deepEqual(visibleEnvNames, ["SB_EXECUTION_ID", "TMPDIR"]);
});

Deno.test("planWorkerLaunch() denies the default hosts unless allow_net lists hosts", async (t) => {
  const base = {
    bootstrapPath: "/rt/workers/bootstrap.ts",
    socketPath: "/run/rt/w.sock",
    tempDir: "/run/rt/w.tmp",
    readPaths: ["/fns/a"],
    envVars: [],
    executionId: "id",
    memoryLimitMb: 64,
    location: "http://fn-x.localhost/",
    denoDir: "/cache",
    defaultDenyNet: ["127.0.0.0/8", "[::1]", "10.1.2.3"],
  };
  const netArgs = (args: string[]) => args.filter((a) => a.includes("-net"));
  await t.step("no permissions: everything but the default hosts", () => {
    assert.deepEqual(netArgs(planWorkerLaunch(base).args), [
      "--allow-net",
      "--deny-net=127.0.0.0/8,[::1],10.1.2.3",
    ]);
  });
  await t.step("deny_net adds to the defaults", () => {
    const plan = planWorkerLaunch({ ...base, permissions: { deny_net: ["evil.example"] } });
    assert.deepEqual(netArgs(plan.args), [
      "--allow-net",
      "--deny-net=127.0.0.0/8,[::1],10.1.2.3,evil.example",
    ]);
  });
  await t.step("allow_net hosts replace the defaults", () => {
    const plan = planWorkerLaunch({ ...base, permissions: { allow_net: ["127.0.0.1:54321"] } });
    assert.deepEqual(netArgs(plan.args), ["--allow-net=127.0.0.1:54321,unix:/run/rt/w.sock"]);
  });
});

Deno.test("denyNetEntry() brackets IPv6 addresses and drops their zone", () => {
  assert.equal(denyNetEntry("10.0.0.5"), "10.0.0.5");
  assert.equal(denyNetEntry("fe80::1%eth0"), "[fe80::1]");
  assert.equal(denyNetEntry("2001:db8::1"), "[2001:db8::1]");
});
