/**
 * Unit tests for `runtime/limits.ts`: what a usage sample calls for (warn, retire, kill) and the
 * parsing of `/proc/<pid>/stat`.
 */

import assert from "node:assert/strict";
import {
  type BeforeunloadRatios,
  checkLimits,
  type LimitAction,
  type LimitState,
  parseProcStat,
  type UsageSample,
  type WorkerLimits,
} from "../../runtime/limits.ts";

const MIB = 1024 * 1024;

/** 10 MiB of growth, a 1 s wall clock (retire at 500 ms), CPU soft 100 ms and hard 200 ms. */
const LIMITS: WorkerLimits = {
  memoryLimitMb: 10,
  workerTimeoutMs: 1000,
  cpuTimeSoftLimitMs: 100,
  cpuTimeHardLimitMs: 200,
};

/** Distinct percentages, so each warning threshold is told apart from the others. */
const RATIOS: BeforeunloadRatios = { memory: 50, cpu: 25, wallClock: 75 };

/** Where a warning fires under {@linkcode LIMITS} and {@linkcode RATIOS}. */
const MEMORY_WARN_BYTES = 5 * MIB;
const CPU_WARN_MS = 50;
const WALL_CLOCK_WARN_MS = 750;

function limits(overrides: Partial<WorkerLimits> = {}): WorkerLimits {
  return { ...LIMITS, ...overrides };
}

function sample(overrides: Partial<UsageSample> = {}): UsageSample {
  return { cpuMs: 0, memoryGrowthBytes: 0, elapsedMs: 0, ...overrides };
}

function freshState(): LimitState {
  return { warned: new Set(), retired: false };
}

/** Everything at the limit: the memory kill must win. */
const OVER_ALL: UsageSample = {
  memoryGrowthBytes: 10 * MIB,
  cpuMs: 200,
  elapsedMs: 1000,
};

Deno.test("checkLimits() returns nothing for an idle sample", () => {
  const state = freshState();
  assert.deepEqual(checkLimits(LIMITS, RATIOS, sample(), state), []);
  assert.deepEqual(state, freshState());
});

Deno.test("checkLimits() kills at each limit", async (t) => {
  const cases: {
    name: string;
    sample: UsageSample;
    expected: LimitAction[];
  }[] = [
    {
      name: "memory growth of exactly memoryLimitMb MiB",
      sample: sample({ memoryGrowthBytes: 10 * MIB }),
      expected: [{ kind: "kill", reason: "Memory" }],
    },
    {
      name: "memory growth above memoryLimitMb",
      sample: sample({ memoryGrowthBytes: 64 * MIB }),
      expected: [{ kind: "kill", reason: "Memory" }],
    },
    {
      name: "CPU time of exactly cpuTimeHardLimitMs",
      sample: sample({ cpuMs: 200 }),
      expected: [{ kind: "kill", reason: "CPUTime" }],
    },
    {
      name: "CPU time above cpuTimeHardLimitMs",
      sample: sample({ cpuMs: 5000 }),
      expected: [{ kind: "kill", reason: "CPUTime" }],
    },
    {
      name: "wall clock of exactly workerTimeoutMs",
      sample: sample({ elapsedMs: 1000 }),
      expected: [{ kind: "kill", reason: "WallClockTime" }],
    },
    {
      name: "wall clock above workerTimeoutMs",
      sample: sample({ elapsedMs: 1000.5 }),
      expected: [{ kind: "kill", reason: "WallClockTime" }],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.deepEqual(checkLimits(LIMITS, RATIOS, c.sample, freshState()), c.expected);
    });
  }
});

Deno.test("checkLimits() does not kill just below each limit", async (t) => {
  const cases: { name: string; sample: UsageSample; expected: LimitAction[] }[] = [
    {
      name: "memory one byte short",
      sample: sample({ memoryGrowthBytes: 10 * MIB - 1 }),
      expected: [{ kind: "warn", reason: "memory" }],
    },
    {
      name: "CPU one millisecond short",
      sample: sample({ cpuMs: 199 }),
      expected: [{ kind: "warn", reason: "cpu" }, { kind: "retire", reason: "CPUTime" }],
    },
    {
      name: "wall clock one millisecond short",
      sample: sample({ elapsedMs: 999 }),
      expected: [
        { kind: "warn", reason: "wall_clock" },
        { kind: "retire", reason: "WallClockTime" },
      ],
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      assert.deepEqual(checkLimits(LIMITS, RATIOS, c.sample, freshState()), c.expected);
    });
  }
});

Deno.test("checkLimits() returns a kill alone, in the order memory, CPU, wall clock", async (t) => {
  const cases: { name: string; sample: UsageSample; expected: LimitAction }[] = [
    {
      name: "all three over: memory",
      sample: OVER_ALL,
      expected: { kind: "kill", reason: "Memory" },
    },
    {
      name: "memory and CPU over: memory",
      sample: sample({ memoryGrowthBytes: 10 * MIB, cpuMs: 200 }),
      expected: { kind: "kill", reason: "Memory" },
    },
    {
      name: "memory and wall clock over: memory",
      sample: sample({ memoryGrowthBytes: 10 * MIB, elapsedMs: 1000 }),
      expected: { kind: "kill", reason: "Memory" },
    },
    {
      name: "CPU and wall clock over: CPU",
      sample: sample({ cpuMs: 200, elapsedMs: 1000 }),
      expected: { kind: "kill", reason: "CPUTime" },
    },
    {
      name: "wall clock over, memory and CPU at their warnings: wall clock",
      sample: sample({
        memoryGrowthBytes: MEMORY_WARN_BYTES,
        cpuMs: 150,
        elapsedMs: 1000,
      }),
      expected: { kind: "kill", reason: "WallClockTime" },
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const state = freshState();
      assert.deepEqual(checkLimits(LIMITS, RATIOS, c.sample, state), [c.expected]);
      // No warning or retirement was recorded either, so none is lost if the kill fails.
      assert.deepEqual(state, freshState());
    });
  }
  await t.step("a ratio of 100 warns nowhere before the kill", () => {
    const ratios = { memory: 100, cpu: 100, wallClock: 100 };
    const state = freshState();
    assert.deepEqual(checkLimits(LIMITS, ratios, sample({ cpuMs: 200 }), state), [
      { kind: "kill", reason: "CPUTime" },
    ]);
    assert.equal(state.warned.size, 0);
  });
});

Deno.test("checkLimits() warns at the ratio percent of each limit", async (t) => {
  // Soft CPU limit and wall clock retirement are kept out of the way where they would interfere.
  const cases: {
    name: string;
    limits: WorkerLimits;
    below: UsageSample;
    at: UsageSample;
    reason: "memory" | "cpu" | "wall_clock";
  }[] = [
    {
      name: "memory at 50% of memoryLimitMb",
      limits: LIMITS,
      below: sample({ memoryGrowthBytes: MEMORY_WARN_BYTES - 1 }),
      at: sample({ memoryGrowthBytes: MEMORY_WARN_BYTES }),
      reason: "memory",
    },
    {
      name: "cpu at 25% of cpuTimeHardLimitMs (not of the soft limit)",
      limits: LIMITS,
      below: sample({ cpuMs: CPU_WARN_MS - 1 }),
      at: sample({ cpuMs: CPU_WARN_MS }),
      reason: "cpu",
    },
    {
      name: "wall clock at 75% of workerTimeoutMs",
      // A retirement at half the wall clock would come with it; here only the warning is checked.
      limits: LIMITS,
      below: sample({ elapsedMs: WALL_CLOCK_WARN_MS - 1 }),
      at: sample({ elapsedMs: WALL_CLOCK_WARN_MS }),
      reason: "wall_clock",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const state = freshState();
      const warnings = (actions: LimitAction[]) => actions.filter((a) => a.kind === "warn");
      assert.deepEqual(warnings(checkLimits(c.limits, RATIOS, c.below, state)), []);
      assert.equal(state.warned.has(c.reason), false);
      assert.deepEqual(warnings(checkLimits(c.limits, RATIOS, c.at, state)), [
        { kind: "warn", reason: c.reason },
      ]);
      assert.deepEqual([...state.warned], [c.reason]);
    });
  }
});

Deno.test("checkLimits() fires each warning once", async (t) => {
  const noRetire = limits({ cpuTimeSoftLimitMs: 0, workerTimeoutMs: 0 });
  await t.step("memory and cpu together, in that order, then never again", () => {
    const state = freshState();
    const busy = sample({ memoryGrowthBytes: 9 * MIB, cpuMs: 190 });
    assert.deepEqual(checkLimits(noRetire, RATIOS, busy, state), [
      { kind: "warn", reason: "memory" },
      { kind: "warn", reason: "cpu" },
    ]);
    assert.deepEqual(state.warned, new Set(["memory", "cpu"]));
    assert.deepEqual(checkLimits(noRetire, RATIOS, busy, state), []);
    assert.deepEqual(checkLimits(noRetire, RATIOS, sample({ cpuMs: 199 }), state), []);
  });
  await t.step("a reason already in state.warned does not fire", () => {
    const state: LimitState = { warned: new Set(["wall_clock"]), retired: true };
    assert.deepEqual(checkLimits(LIMITS, RATIOS, sample({ elapsedMs: 900 }), state), []);
  });
  await t.step("a reason not yet warned still fires after another one did", () => {
    const state = freshState();
    assert.deepEqual(checkLimits(noRetire, RATIOS, sample({ cpuMs: 60 }), state), [
      { kind: "warn", reason: "cpu" },
    ]);
    assert.deepEqual(
      checkLimits(noRetire, RATIOS, sample({ cpuMs: 60, memoryGrowthBytes: 6 * MIB }), state),
      [{ kind: "warn", reason: "memory" }],
    );
  });
  await t.step("all three at once, then retirement, in that order", () => {
    const state = freshState();
    const late = sample({ memoryGrowthBytes: 6 * MIB, cpuMs: 60, elapsedMs: 800 });
    assert.deepEqual(checkLimits(limits({ cpuTimeSoftLimitMs: 0 }), RATIOS, late, state), [
      { kind: "warn", reason: "memory" },
      { kind: "warn", reason: "cpu" },
      { kind: "warn", reason: "wall_clock" },
      { kind: "retire", reason: "WallClockTime" },
    ]);
  });
});

Deno.test("checkLimits() treats a limit of 0 as no limit", async (t) => {
  const huge = sample({ memoryGrowthBytes: 4096 * MIB, cpuMs: 1e9, elapsedMs: 1e9 });
  const cases: { name: string; limits: WorkerLimits; sample: UsageSample }[] = [
    {
      name: "memoryLimitMb: no kill, no warning",
      limits: limits({ memoryLimitMb: 0 }),
      sample: sample({ memoryGrowthBytes: 4096 * MIB }),
    },
    {
      name: "cpuTimeHardLimitMs: no kill, no warning",
      limits: limits({ cpuTimeHardLimitMs: 0, cpuTimeSoftLimitMs: 0 }),
      sample: sample({ cpuMs: 1e9 }),
    },
    {
      name: "cpuTimeSoftLimitMs: no retirement",
      limits: limits({ cpuTimeSoftLimitMs: 0, cpuTimeHardLimitMs: 0 }),
      sample: sample({ cpuMs: 1e9 }),
    },
    {
      name: "workerTimeoutMs: no kill, no warning, no retirement at half",
      limits: limits({ workerTimeoutMs: 0 }),
      sample: sample({ elapsedMs: 1e9 }),
    },
    {
      name: "all of them",
      limits: {
        memoryLimitMb: 0,
        workerTimeoutMs: 0,
        cpuTimeSoftLimitMs: 0,
        cpuTimeHardLimitMs: 0,
      },
      sample: huge,
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const state = freshState();
      assert.deepEqual(checkLimits(c.limits, RATIOS, c.sample, state), []);
      assert.deepEqual(state, freshState());
    });
  }
  await t.step("ratios of 0 do not warn about a limit of 0", () => {
    const none = {
      memoryLimitMb: 0,
      workerTimeoutMs: 0,
      cpuTimeSoftLimitMs: 0,
      cpuTimeHardLimitMs: 0,
    };
    assert.deepEqual(
      checkLimits(none, { memory: 0, cpu: 0, wallClock: 0 }, sample(), freshState()),
      [],
    );
  });
  await t.step("the soft CPU limit still retires without a hard one", () => {
    assert.deepEqual(
      checkLimits(limits({ cpuTimeHardLimitMs: 0 }), RATIOS, sample({ cpuMs: 100 }), freshState()),
      [{ kind: "retire", reason: "CPUTime" }],
    );
  });
});

Deno.test("checkLimits() retires once", async (t) => {
  const cases: {
    name: string;
    limits: WorkerLimits;
    below: UsageSample;
    at: UsageSample;
    reason: "CPUTime" | "WallClockTime";
  }[] = [
    {
      name: "at cpuTimeSoftLimitMs with reason CPUTime",
      // A hard limit of 0 keeps the cpu warning out of the way.
      limits: limits({ cpuTimeHardLimitMs: 0 }),
      below: sample({ cpuMs: 99 }),
      at: sample({ cpuMs: 100 }),
      reason: "CPUTime",
    },
    {
      name: "at half of workerTimeoutMs with reason WallClockTime",
      limits: LIMITS,
      below: sample({ elapsedMs: 499 }),
      at: sample({ elapsedMs: 500 }),
      reason: "WallClockTime",
    },
  ];
  for (const c of cases) {
    await t.step(c.name, () => {
      const state = freshState();
      assert.deepEqual(checkLimits(c.limits, RATIOS, c.below, state), []);
      assert.equal(state.retired, false);
      assert.deepEqual(checkLimits(c.limits, RATIOS, c.at, state), [
        { kind: "retire", reason: c.reason },
      ]);
      assert.equal(state.retired, true);
      assert.deepEqual(checkLimits(c.limits, RATIOS, c.at, state), []);
    });
  }
  await t.step("CPUTime wins when both are reached in one sample", () => {
    const state = freshState();
    const actions = checkLimits(
      limits({ cpuTimeHardLimitMs: 0 }),
      RATIOS,
      sample({ cpuMs: 100, elapsedMs: 500 }),
      state,
    );
    assert.deepEqual(actions, [{ kind: "retire", reason: "CPUTime" }]);
    assert.equal(state.retired, true);
  });
  await t.step("an already retired worker is not retired again", () => {
    const state: LimitState = { warned: new Set(), retired: true };
    assert.deepEqual(
      checkLimits(limits({ cpuTimeHardLimitMs: 0 }), RATIOS, sample({ cpuMs: 150 }), state),
      [],
    );
  });
  await t.step("a kill still comes after retirement", () => {
    const state = freshState();
    checkLimits(LIMITS, RATIOS, sample({ cpuMs: 100 }), state);
    assert.equal(state.retired, true);
    assert.deepEqual(checkLimits(LIMITS, RATIOS, sample({ cpuMs: 200 }), state), [
      { kind: "kill", reason: "CPUTime" },
    ]);
  });
});

Deno.test("checkLimits() with ratios of 0 warns on the first sample", () => {
  const state = freshState();
  const ratios = { memory: 0, cpu: 0, wallClock: 0 };
  assert.deepEqual(checkLimits(LIMITS, ratios, sample(), state), [
    { kind: "warn", reason: "memory" },
    { kind: "warn", reason: "cpu" },
    { kind: "warn", reason: "wall_clock" },
  ]);
  assert.deepEqual(state, { warned: new Set(["memory", "cpu", "wall_clock"]), retired: false });
  assert.deepEqual(checkLimits(LIMITS, ratios, sample(), state), []);
});

/**
 * A stat line shaped like a real one (fields as in proc(5)): utime 250, stime 37 (ticks), rss
 * 12345 (pages). Fields 14, 15 and 24 are what parseProcStat() reads.
 */
const STAT_TAIL = "S 1 1234 1234 0 -1 4194560 2718 0 3 0 250 37 0 0 20 0 9 0 332041 " +
  "1073741824 12345 18446744073709551615 94826841817088 94826841836969 140728020015424 0 0 0 0 " +
  "16781312 17990 0 0 0 17 1 0 0 0 0 0 94826841852976 94826841854592 94826862739456 " +
  "140728020024033 140728020024053 140728020024053 140728020025323 0\n";
const STAT_USAGE = { cpuMs: (250 + 37) * 10, rssBytes: 12345 * 4096 };

Deno.test("parseProcStat() reads CPU time and resident memory", async (t) => {
  const cases: Record<string, string> = {
    "a plain command name": `1234 (deno) ${STAT_TAIL}`,
    "a command name with a space": `1234 (my cmd) ${STAT_TAIL}`,
    "a command name with spaces and parentheses": `1234 (my (weird) cmd) ${STAT_TAIL}`,
    "a command name ending in a parenthesis": `1234 (cmd) ) ${STAT_TAIL}`,
    "a command name with a fake stat tail": `1234 (x) S 1 2 3 4 5 6 7 8 9 99 99) ${STAT_TAIL}`,
    "no trailing newline": `1234 (deno) ${STAT_TAIL.trimEnd()}`,
  };
  for (const [name, text] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.deepEqual(parseProcStat(text), STAT_USAGE);
    });
  }
});

Deno.test("parseProcStat() converts ticks of 10 ms and pages of 4096 bytes", async (t) => {
  const cases: { utime: number; stime: number; rss: number; cpuMs: number; rssBytes: number }[] = [
    { utime: 0, stime: 0, rss: 0, cpuMs: 0, rssBytes: 0 },
    { utime: 1, stime: 0, rss: 1, cpuMs: 10, rssBytes: 4096 },
    { utime: 0, stime: 1, rss: 2, cpuMs: 10, rssBytes: 8192 },
    { utime: 12, stime: 3, rss: 256, cpuMs: 150, rssBytes: MIB },
  ];
  for (const c of cases) {
    await t.step(`utime ${c.utime}, stime ${c.stime}, rss ${c.rss}`, () => {
      const fields = STAT_TAIL.split(" ");
      // STAT_TAIL starts at field 3, so field n is fields[n - 3].
      fields[14 - 3] = String(c.utime);
      fields[15 - 3] = String(c.stime);
      fields[24 - 3] = String(c.rss);
      assert.deepEqual(parseProcStat(`42 (w) ${fields.join(" ")}`), {
        cpuMs: c.cpuMs,
        rssBytes: c.rssBytes,
      });
    });
  }
});

Deno.test("parseProcStat() returns undefined for text that is not a stat line", async (t) => {
  const cases: Record<string, string> = {
    "empty": "",
    "garbage": "not a stat line",
    "no command name": `1234 ${STAT_TAIL}`,
    "nothing after the command name": "1234 (deno)",
    "cut off after the state": "1234 (deno) S 1 1234",
    "cut off before rss": `1234 (deno) ${STAT_TAIL.split(" ").slice(0, 20).join(" ")}`,
    "utime not a number": `1234 (deno) ${STAT_TAIL.replace(" 250 ", " abc ")}`,
    "rss not a number": `1234 (deno) ${STAT_TAIL.replace(" 12345 ", " 12k ")}`,
  };
  for (const [name, text] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(parseProcStat(text), undefined);
    });
  }
});
