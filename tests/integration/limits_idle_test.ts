/**
 * How idle and waiting workers end (DESIGN §4–§5) through a real runtime: `EdgeRuntime.waitUntil`
 * holds off an early drop, `tryCleanupIdleWorkers` and `context.supervisor.requestAbsentTimeoutMs`
 * end idle workers after `beforeunload` (reason `early_drop`), and the request idle timeouts
 * (`--user-worker-request-idle-timeout`, `--main-worker-request-idle-timeout`) answer 504.
 */

import assert from "node:assert/strict";
import {
  fetchText,
  fixtureMain,
  FUNCTION_FIXTURES,
  isAlive,
  waitFor,
  withRuntime,
} from "../test_utils.ts";
import {
  call,
  cleanupIdleWorkers,
  logSince,
  settle,
  SUPABASE_API,
  waitForEnd,
  waitForEndedLine,
  waitForLog,
} from "./_limits_util.ts";

Deno.test("EdgeRuntime.waitUntil() keeps a worker alive until its promise settles", async (t) => {
  await withRuntime({ args: [SUPABASE_API, "-v"] }, async (rt) => {
    await t.step(
      "the response comes first, then the background work; waitUntil is all there is",
      async () => {
        const mark = rt.stderr().length;
        const marker = crypto.randomUUID();
        const result = await call(`${rt.url}/wait-until?marker=${marker}`, { force: true });
        assert.equal(result.status, 200);
        assert.deepEqual(result.body.keys, ["waitUntil"]);
        assert.ok(
          !logSince(rt, mark).includes(marker),
          "the background work ran before the answer",
        );
        await waitForLog(
          rt,
          mark,
          new RegExp(`\\[fn:wait-until\\] background work done marker=${marker}`),
        );
        await settle(rt);
      },
    );

    await t.step(
      "tryCleanupIdleWorkers leaves a worker with a pending waitUntil alone",
      async () => {
        const mark = rt.stderr().length;
        const marker = crypto.randomUUID();
        const result = await call(`${rt.url}/wait-until?marker=${marker}`, { force: true });
        assert.equal(await cleanupIdleWorkers(rt), 0);
        await waitForLog(rt, mark, new RegExp(`background work done marker=${marker}`));
        assert.ok(await isAlive(result.body.pid!), "the worker ended although it was not idle");
        // Once the promise has settled the worker is idle like any other.
        assert.equal(await cleanupIdleWorkers(rt), 1);
        await waitForEnd(result.body.pid!);
      },
    );

    await t.step(
      "a worker retired at half its wall clock ends only once its waitUntil settles",
      async () => {
        const mark = rt.stderr().length;
        const marker = crypto.randomUUID();
        // Retired at ~600 ms, the promise settles at ~800 ms, the wall-clock kill would come at 1200.
        const result = await call(`${rt.url}/wait-until-slow?ms=800&marker=${marker}`, {
          timeoutMs: 1200,
          force: true,
        });
        assert.equal(result.status, 200);
        const pid = result.body.pid!;
        assert.equal(await waitForEndedLine(rt, mark, pid), "EarlyDrop");
        const log = logSince(rt, mark);
        const retiredAt = log.indexOf(`worker ${pid} retired: WallClockTime`);
        const doneAt = log.indexOf(`background work done marker=${marker}`);
        const endedAt = log.indexOf(`worker ${pid} for "wait-until-slow" ended:`);
        assert.ok(
          retiredAt !== -1 && retiredAt < doneAt && doneAt < endedAt,
          `expected retire, then the background work, then the end:\n${log}`,
        );
        await waitForEnd(pid);
      },
    );
  });
});

Deno.test("idle workers end early with beforeunload early_drop", async (t) => {
  await withRuntime({ args: [SUPABASE_API, "-v"] }, async (rt) => {
    await t.step(
      "tryCleanupIdleWorkers ends and counts idle workers; a busy one keeps working",
      async () => {
        const mark = rt.stderr().length;
        const echo = await call(`${rt.url}/echo`, { force: true });
        const logger = await call(`${rt.url}/beforeunload-logger`, { force: true });
        const busy = call(`${rt.url}/slow?ms=1000`, { force: true });
        await waitFor(async () => (await rt.childPids()).length === 3, 3000, "three workers");
        assert.equal(await cleanupIdleWorkers(rt), 2);
        assert.equal(await waitForEndedLine(rt, mark, logger.body.pid!), "EarlyDrop");
        assert.match(
          logSince(rt, mark),
          /\[fn:beforeunload-logger\] beforeunload reason=early_drop/,
        );
        await waitForEnd(echo.body.pid!);
        await waitForEnd(logger.body.pid!);
        const busyResult = await busy;
        assert.equal(busyResult.status, 200);
        assert.ok(await isAlive(busyResult.body.pid!), "the busy worker was ended");
        await settle(rt);
      },
    );

    await t.step(
      "a worker that ignores SIGTERM or spins in beforeunload ends all the same",
      async () => {
        const mark = rt.stderr().length;
        const stubborn = await call(`${rt.url}/ignores-sigterm`, { force: true });
        const spinner = await call(`${rt.url}/beforeunload-spinner`, { force: true });
        assert.deepEqual([stubborn.status, spinner.status], [200, 200]);
        assert.equal(await cleanupIdleWorkers(rt), 2);
        assert.equal(await waitForEndedLine(rt, mark, stubborn.body.pid!), "EarlyDrop");
        assert.equal(await waitForEndedLine(rt, mark, spinner.body.pid!), "EarlyDrop");
        assert.match(
          logSince(rt, mark),
          /\[fn:beforeunload-spinner\] beforeunload reason=early_drop, spinning/,
        );
        await waitForEnd(stubborn.body.pid!);
        await waitForEnd(spinner.body.pid!);
      },
    );

    await t.step(
      "requestAbsentTimeoutMs ends a worker that gets no request for that long",
      async () => {
        const mark = rt.stderr().length;
        const limits = { absentMs: 300 };
        const other = await call(`${rt.url}/echo`, { force: true });
        const first = await call(`${rt.url}/beforeunload-logger`, { ...limits, force: true });
        // Requests 150 ms apart keep it: it is never absent for 300 ms.
        for (let i = 0; i < 3; i++) {
          await new Promise((resolve) => setTimeout(resolve, 150));
          assert.equal(
            (await call(`${rt.url}/beforeunload-logger`, limits)).body.pid,
            first.body.pid,
          );
        }
        const lastAnswerAt = performance.now();
        await waitForEnd(first.body.pid!);
        const idleMs = performance.now() - lastAnswerAt;
        assert.ok(idleMs >= 250, `ended after only ${idleMs.toFixed(0)} ms without requests`);
        assert.equal(await waitForEndedLine(rt, mark, first.body.pid!), "EarlyDrop");
        assert.match(
          logSince(rt, mark),
          /\[fn:beforeunload-logger\] beforeunload reason=early_drop/,
        );
        assert.ok(await isAlive(other.body.pid!), "a worker without the timeout ended too");
        await settle(rt);
      },
    );

    await t.step("requestAbsentTimeoutMs waits for a pending waitUntil", async () => {
      const mark = rt.stderr().length;
      const marker = crypto.randomUUID();
      const result = await call(`${rt.url}/wait-until-slow?ms=700&marker=${marker}`, {
        absentMs: 200,
        force: true,
      });
      assert.equal(result.status, 200);
      assert.equal(await waitForEndedLine(rt, mark, result.body.pid!), "EarlyDrop");
      const log = logSince(rt, mark);
      const doneAt = log.indexOf(`background work done marker=${marker}`);
      const endedAt = log.indexOf(`worker ${result.body.pid} for "wait-until-slow" ended:`);
      assert.ok(doneAt !== -1 && doneAt < endedAt, `ended before its waitUntil settled:\n${log}`);
      await waitForEnd(result.body.pid!);
    });

    // Regression: a second cleanup during a worker's 100 ms unload grace counted it again and
    // sent it a second beforeunload (50de2ba).
    await t.step("back-to-back cleanups count an idle worker once and warn it once", async () => {
      const mark = rt.stderr().length;
      const worker = await call(`${rt.url}/beforeunload-logger`, { force: true });
      const counts = [await cleanupIdleWorkers(rt), await cleanupIdleWorkers(rt)];
      assert.equal(await waitForEndedLine(rt, mark, worker.body.pid!), "EarlyDrop");
      await waitForEnd(worker.body.pid!);
      assert.deepEqual(counts, [1, 0]);
      const warnings = logSince(rt, mark).match(/beforeunload reason=early_drop/g) ?? [];
      assert.equal(warnings.length, 1, `beforeunload fired ${warnings.length} times`);
    });
  });
});

Deno.test("--user-worker-request-idle-timeout answers 504 through the default main service and cuts stalled streams", async (t) => {
  const args = [`--functions=${FUNCTION_FIXTURES}`, "--user-worker-request-idle-timeout=300"];
  await withRuntime({ args }, async (rt) => {
    await t.step("a response head later than the timeout is 504 WORKER_TIMEOUT", async () => {
      const startedAt = performance.now();
      const late = await fetchText(`${rt.url}/slow?ms=2000`);
      const elapsedMs = performance.now() - startedAt;
      assert.equal(late.status, 504);
      assert.deepEqual(JSON.parse(late.body), {
        code: "WORKER_TIMEOUT",
        message: "Worker failed to respond in time (please check logs)",
      });
      assert.ok(elapsedMs < 1500, `answered only after ${elapsedMs.toFixed(0)} ms`);
      assert.equal((await fetchText(`${rt.url}/slow?ms=0`)).status, 200);
    });

    await t.step("a stream whose chunk gap exceeds the timeout is cut", async () => {
      const response = await fetch(`${rt.url}/slow-stream?chunks=3&ms=800`);
      assert.equal(response.status, 200);
      const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      let failure: unknown;
      try {
        while (true) {
          const { done, value } = await reader.read();
          if (done) break;
          text += value;
        }
      } catch (error) {
        failure = error;
      }
      assert.match(text, /^chunk 0 /);
      assert.ok(!text.includes("chunk 1"), `the stream was not cut: ${text}`);
      // Cut, not ended: the client can tell the body is incomplete.
      assert.ok(failure !== undefined, `the cut body ended cleanly: ${text}`);
    });

    await t.step("a stream whose gaps stay under the timeout arrives whole", async () => {
      const { status, body } = await fetchText(`${rt.url}/slow-stream?chunks=3&ms=100`);
      assert.equal(status, 200);
      assert.deepEqual(body.split("\n").map((line) => line.split(" at ")[0]), [
        "chunk 0",
        "chunk 1",
        "chunk 2",
        "",
      ]);
    });
  });
});

Deno.test("--main-worker-request-idle-timeout answers 504 when the main service does not answer in time", async () => {
  const args = [
    "--main-service=" + fixtureMain("never-answers"),
    "--main-worker-request-idle-timeout=200",
  ];
  await withRuntime({ args }, async (rt) => {
    const health = await fetchText(`${rt.url}/_internal/health`);
    assert.equal(health.status, 200);
    const startedAt = performance.now();
    const late = await fetchText(`${rt.url}/anything`);
    const elapsedMs = performance.now() - startedAt;
    assert.equal(late.status, 504);
    assert.ok(elapsedMs < 3000, `answered only after ${elapsedMs.toFixed(0)} ms`);
  });
});

Deno.test("the built-in main service applies --cpu-time-hard-limit-ms to every function", async () => {
  const args = [
    `--functions=${FUNCTION_FIXTURES}`,
    "--cpu-time-soft-limit-ms=100",
    "--cpu-time-hard-limit-ms=300",
  ];
  await withRuntime({ args }, async (rt) => {
    const { status, body } = await fetchText(`${rt.url}/busy-loop`);
    assert.equal(status, 546);
    assert.equal(JSON.parse(body).code, "WORKER_LIMIT");
  });
});
