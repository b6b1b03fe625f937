/**
 * `--event-worker`: an event module reading `new EventManager()` receives Boot, BootFailure, Log
 * (every console line, with its level, in order), Shutdown (with reason and usage) and
 * UncaughtException, each with Supabase's field names and metadata.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fetchText, FUNCTION_FIXTURES, ROOT, waitFor, withRuntime } from "../test_utils.ts";

interface RuntimeEvent {
  timestamp: string;
  event_type: string;
  event: Record<string, unknown>;
  metadata: { service_path: string; execution_id: string };
}

Deno.test("the event worker receives every event type with Supabase's fields", async () => {
  const dir = await Deno.makeTempDir({ prefix: "events_test_" });
  const file = join(dir, "events.jsonl");
  await Deno.writeTextFile(file, "");
  const read = async (): Promise<RuntimeEvent[]> =>
    (await Deno.readTextFile(file)).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const ofType = async (type: string) => (await read()).filter((e) => e.event_type === type);
  try {
    await withRuntime({
      args: [
        `--functions=${FUNCTION_FIXTURES}`,
        `--event-worker=${ROOT}tests/fixtures/events/record-to-file`,
        "--cpu-time-hard-limit-ms=300",
      ],
      env: { EVENTS_FILE: file },
    }, async (rt) => {
      assert.equal((await fetchText(`${rt.url}/logs-levels?marker=m1`)).status, 200);
      await waitFor(async () => (await ofType("Log")).length >= 5, 5000, "the Log events");
      const logs = (await ofType("Log")).filter((e) => String(e.event.msg).endsWith(" m1"));
      assert.deepEqual(
        logs.map((e) => [e.event.level, e.event.msg]),
        [
          ["Debug", "debug m1"],
          ["Info", "log m1"],
          ["Info", "info m1"],
          ["Warning", "warn m1"],
          ["Error", "error m1"],
        ],
      );
      const [boot] = await ofType("Boot");
      assert.equal(typeof boot.event.boot_time, "number");
      assert.equal(boot.metadata.service_path, join(FUNCTION_FIXTURES, "logs-levels"));
      assert.match(boot.metadata.execution_id, /^[0-9a-f-]{36}$/);
      assert.ok(!Number.isNaN(Date.parse(boot.timestamp)));
      assert.equal(logs[0].metadata.execution_id, boot.metadata.execution_id);
      assert.ok(!rt.stderr().includes("debug m1"), "function output goes to events, not the log");

      assert.equal((await fetchText(`${rt.url}/module-not-found`)).status, 503);
      await waitFor(async () => (await ofType("BootFailure")).length > 0, 5000, "BootFailure");
      assert.match(String((await ofType("BootFailure"))[0].event.msg), /^worker boot error: /);

      assert.equal((await fetchText(`${rt.url}/busy-loop`)).status, 546);
      await waitFor(async () => (await ofType("Shutdown")).length > 0, 5000, "Shutdown");
      const [cpuKill] = await ofType("Shutdown");
      assert.equal(cpuKill.event.reason, "CPUTime");
      assert.ok(Number(cpuKill.event.cpu_time_used) >= 300);
      assert.ok(Number((cpuKill.event.memory_used as { total: number }).total) > 0);

      assert.equal((await fetchText(`${rt.url}/unhandled-rejection/boom`)).status, 500);
      await waitFor(async () => (await ofType("UncaughtException")).length > 0, 5000, "the crash");
      assert.match(
        String((await ofType("UncaughtException"))[0].event.exception),
        /nobody handles this/,
      );

      const cleanup = await fetchText(`${rt.url}/logs-levels?marker=m2`);
      assert.equal(cleanup.status, 200);
    });
    // The runtime stopped: every worker ended, and each end was reported.
    const shutdowns = await ofType("Shutdown");
    assert.ok(shutdowns.some((e) => e.event.reason === "TerminationRequested"), "termination");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Shutdown events name the limit that ended each worker", async () => {
  const dir = await Deno.makeTempDir({ prefix: "events_test_" });
  const file = join(dir, "events.jsonl");
  await Deno.writeTextFile(file, "");
  const shutdowns = async () =>
    (await Deno.readTextFile(file)).trim().split("\n").filter(Boolean)
      .map((line) => JSON.parse(line) as RuntimeEvent)
      .filter((e) => e.event_type === "Shutdown");
  const reasonOf = async (fn: string) =>
    (await shutdowns()).find((e) => e.metadata.service_path.endsWith(`/${fn}`))?.event.reason;
  try {
    await withRuntime({
      args: [
        `--functions=${FUNCTION_FIXTURES}`,
        `--event-worker=${ROOT}tests/fixtures/events/record-to-file`,
        "--memory-limit-mb=32",
        "--worker-timeout-ms=1000",
      ],
      env: { EVENTS_FILE: file },
    }, async (rt) => {
      assert.equal((await fetchText(`${rt.url}/array-buffer-hog`)).status, 546);
      assert.equal((await fetchText(`${rt.url}/slow?ms=3000`)).status, 546);
      assert.equal((await fetchText(`${rt.url}/echo`)).status, 200);
      await waitFor(async () => (await reasonOf("echo")) !== undefined, 5000, "echo's end");
      assert.equal(await reasonOf("array-buffer-hog"), "Memory");
      assert.equal(await reasonOf("slow"), "WallClockTime");
      // Retired at half its wall clock with nothing in flight: dropped early.
      assert.equal(await reasonOf("echo"), "EarlyDrop");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
