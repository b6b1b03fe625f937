/**
 * Unit tests for `runtime/protocol.ts`: the status line a worker prints, the control lines the
 * supervisor writes, and the boot config guard.
 */

import assert from "node:assert/strict";
import {
  formatControlLine,
  formatStatusLine,
  isWorkerBootConfig,
  parseControlLine,
  parseStatusLine,
  STATUS_LINE_PREFIX,
  type WorkerControl,
  type WorkerStatus,
} from "../../runtime/protocol.ts";

const TOKEN = "tok-1";

Deno.test("formatStatusLine() writes the prefix, JSON and a newline", () => {
  const line = formatStatusLine({ token: TOKEN, kind: "ready" });
  assert.ok(line.startsWith(STATUS_LINE_PREFIX));
  assert.ok(line.endsWith("\n"));
  assert.equal(line.split("\n").length, 2, "one line only");
  assert.deepEqual(JSON.parse(line.slice(STATUS_LINE_PREFIX.length)), {
    token: TOKEN,
    kind: "ready",
  });
});

Deno.test("parseStatusLine() reads back what formatStatusLine() wrote", async (t) => {
  const statuses: WorkerStatus[] = [
    { token: TOKEN, kind: "ready" },
    { token: TOKEN, kind: "boot_error", message: 'Module not found "file:///x.ts"' },
    { token: TOKEN, kind: "evaluation_error", message: "Error: boom\n    at file:///x.ts:1:7" },
    { token: TOKEN, kind: "pending_tasks", count: 0 },
    { token: TOKEN, kind: "pending_tasks", count: 3 },
  ];
  for (const status of statuses) {
    const name = status.kind === "pending_tasks" ? `pending_tasks ${status.count}` : status.kind;
    await t.step(name, () => {
      const line = formatStatusLine(status);
      assert.deepEqual(parseStatusLine(line, TOKEN), { before: "", status });
      assert.deepEqual(parseStatusLine(line.trimEnd(), TOKEN), { before: "", status });
    });
  }
});

Deno.test("parseStatusLine() ignores a status with the wrong token", () => {
  const line = formatStatusLine({ token: "forged", kind: "ready" });
  assert.equal(parseStatusLine(line, TOKEN), undefined);
});

Deno.test("parseStatusLine() returns the text printed before the marker", () => {
  const line = `partial output${formatStatusLine({ token: TOKEN, kind: "ready" })}`;
  assert.deepEqual(parseStatusLine(line, TOKEN), {
    before: "partial output",
    status: { token: TOKEN, kind: "ready" },
  });
});

Deno.test("parseStatusLine() ignores lines without a valid status", async (t) => {
  const cases = {
    "plain output": "hello from the function",
    "empty line": "",
    "marker without the record separator":
      `@edge-runtime-status {"token":"${TOKEN}","kind":"ready"}`,
    "garbage JSON": `${STATUS_LINE_PREFIX}{not json`,
    "nothing after the marker": STATUS_LINE_PREFIX,
    "JSON null": `${STATUS_LINE_PREFIX}null`,
    "JSON array": `${STATUS_LINE_PREFIX}[1,2]`,
    "JSON string": `${STATUS_LINE_PREFIX}"ready"`,
    "unknown kind": `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"started"}`,
    "token not a string": `${STATUS_LINE_PREFIX}{"token":1,"kind":"ready"}`,
    "missing token": `${STATUS_LINE_PREFIX}{"kind":"ready"}`,
    "boot_error without message": `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"boot_error"}`,
    "evaluation_error with a numeric message":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"evaluation_error","message":5}`,
    "trailing text after the JSON":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"ready"} and more`,
    "pending_tasks without count":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"pending_tasks"}`,
    "pending_tasks with a string count":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"pending_tasks","count":"3"}`,
    "pending_tasks with a null count":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"pending_tasks","count":null}`,
    "pending_tasks with an array count":
      `${STATUS_LINE_PREFIX}{"token":"${TOKEN}","kind":"pending_tasks","count":[1]}`,
  };
  for (const [name, line] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(parseStatusLine(line, TOKEN), undefined);
    });
  }
});

Deno.test("parseStatusLine() ignores pending_tasks with the wrong token", () => {
  const line = formatStatusLine({ token: "forged", kind: "pending_tasks", count: 1 });
  assert.equal(parseStatusLine(line, TOKEN), undefined);
});

const BEFOREUNLOAD_REASONS = ["cpu", "memory", "wall_clock", "early_drop", "termination"] as const;

Deno.test("formatControlLine() writes one JSON line", () => {
  const line = formatControlLine({ type: "beforeunload", reason: "cpu" });
  assert.ok(line.endsWith("\n"));
  assert.equal(line.split("\n").length, 2, "one line only");
  assert.deepEqual(JSON.parse(line), { type: "beforeunload", reason: "cpu" });
});

Deno.test("parseControlLine() reads back what formatControlLine() wrote", async (t) => {
  for (const reason of BEFOREUNLOAD_REASONS) {
    await t.step(`beforeunload ${reason}`, () => {
      const control: WorkerControl = { type: "beforeunload", reason };
      const line = formatControlLine(control);
      assert.deepEqual(parseControlLine(line), control);
      assert.deepEqual(parseControlLine(line.trimEnd()), control);
    });
  }
});

Deno.test("parseControlLine() returns undefined for anything else", async (t) => {
  const cases: Record<string, string> = {
    "empty line": "",
    "bad JSON": '{"type":"beforeunload",',
    "plain text": "beforeunload cpu",
    "JSON null": "null",
    "JSON array": '["beforeunload","cpu"]',
    "JSON string": '"beforeunload"',
    "JSON number": "1",
    "unknown type": '{"type":"unload","reason":"cpu"}',
    "missing type": '{"reason":"cpu"}',
    "unknown reason": '{"type":"beforeunload","reason":"timeout"}',
    "reason in another case": '{"type":"beforeunload","reason":"CPU"}',
    "worker end reason instead of a beforeunload reason":
      '{"type":"beforeunload","reason":"CPUTime"}',
    "missing reason": '{"type":"beforeunload"}',
    "numeric reason": '{"type":"beforeunload","reason":1}',
    "reasons as an array": '{"type":"beforeunload","reason":["cpu"]}',
    "trailing text after the JSON": '{"type":"beforeunload","reason":"cpu"} and more',
    "two lines": '{"type":"beforeunload","reason":"cpu"}\n{"type":"beforeunload","reason":"cpu"}',
  };
  for (const [name, line] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(parseControlLine(line), undefined);
    });
  }
});

Deno.test("isWorkerBootConfig() accepts a complete config", () => {
  assert.ok(isWorkerBootConfig({
    socketPath: "/tmp/s.sock",
    entryUrl: "file:///fn/index.ts",
    statusToken: TOKEN,
    visibleEnvNames: ["FOO", "SB_EXECUTION_ID"],
  }));
  assert.ok(isWorkerBootConfig({
    socketPath: "/tmp/s.sock",
    entryUrl: "data:text/javascript,",
    statusToken: TOKEN,
    visibleEnvNames: [],
    extra: true,
  }));
});

Deno.test("isWorkerBootConfig() rejects malformed configs", async (t) => {
  const valid = {
    socketPath: "/tmp/s.sock",
    entryUrl: "file:///fn/index.ts",
    statusToken: TOKEN,
    visibleEnvNames: ["FOO"],
  };
  const cases: Record<string, unknown> = {
    "null": null,
    "undefined": undefined,
    "a string": "config",
    "an array": [valid],
    "missing socketPath": { ...valid, socketPath: undefined },
    "numeric entryUrl": { ...valid, entryUrl: 1 },
    "missing statusToken": { ...valid, statusToken: undefined },
    "visibleEnvNames not an array": { ...valid, visibleEnvNames: "FOO" },
    "visibleEnvNames with a number": { ...valid, visibleEnvNames: ["FOO", 1] },
  };
  for (const [name, value] of Object.entries(cases)) {
    await t.step(name, () => {
      assert.equal(isWorkerBootConfig(value), false);
    });
  }
});
