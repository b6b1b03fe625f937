/**
 * Worker limits (DESIGN §5) through a real runtime and the `supabase-api` main service: the CPU
 * hard limit kills (even a synchronous loop, at top level, or inside a `beforeunload` handler),
 * the soft limit and half the wall clock retire without cutting in-flight work, memory growth
 * kills, `beforeunload` reaches the function, crashes fail only their own requests, and under
 * `per_request` the limits count per request.
 */

import assert from "node:assert/strict";
import { fetchText, isAlive, withRuntime } from "../test_utils.ts";
import {
  call,
  CANCELLED,
  logSince,
  settle,
  SUPABASE_API,
  waitForEnd,
  waitForEndedLine,
  waitForLog,
} from "./_limits_util.ts";

Deno.test("limits (per_worker) stop CPU-bound workers at the hard limit and retire them at the soft limit", async (t) => {
  const args = [SUPABASE_API, "-v", "--dispatch-beforeunload-cpu-ratio=20"];
  await withRuntime({ args }, async (rt) => {
    await t.step("a busy loop in the handler is killed; other functions still answer", async () => {
      const mark = rt.stderr().length;
      const result = await call(`${rt.url}/busy-loop`, { softMs: 100, hardMs: 200 });
      assert.deepEqual([result.status, result.body], [500, CANCELLED]);
      assert.ok(result.elapsedMs < 5000, `stopped only after ${result.elapsedMs.toFixed(0)} ms`);
      const [, pid] = await waitForLog(rt, mark, /worker (\d+) for "busy-loop" killed: CPUTime/);
      await waitForEnd(Number(pid));
      assert.equal((await call(`${rt.url}/echo`)).status, 200);
      const health = await fetchText(`${rt.url}/_internal/health`);
      assert.deepEqual([health.status, JSON.parse(health.body)], [200, { message: "ok" }]);
      await settle(rt);
    });

    await t.step(
      "a busy loop at module top level fails create() with WorkerRequestCancelled",
      async () => {
        const mark = rt.stderr().length;
        const result = await call(`${rt.url}/busy-loop-at-top`, { softMs: 100, hardMs: 200 });
        assert.deepEqual([result.status, result.body], [500, CANCELLED]);
        assert.ok(result.elapsedMs < 5000, `stopped only after ${result.elapsedMs.toFixed(0)} ms`);
        await waitForLog(rt, mark, /exceeded its CPU time limit while loading/);
        await settle(rt);
      },
    );

    await t.step(
      "the soft limit retires the worker without cutting its in-flight request",
      async () => {
        const mark = rt.stderr().length;
        const limits = { softMs: 150, hardMs: 2000 };
        // 400 ms of CPU: past the soft limit, well short of the hard one.
        const first = await call(`${rt.url}/cpu-burner?ms=400`, {
          ...limits,
          force: true,
        });
        assert.equal(first.status, 200, JSON.stringify(first.body));
        await waitForLog(rt, mark, new RegExp(`worker ${first.body.pid} retired: CPUTime`));
        const next = await call(`${rt.url}/cpu-burner`, limits);
        assert.equal(next.status, 200);
        assert.notEqual(next.body.pid, first.body.pid, "a retired worker took a new request");
        assert.equal(await waitForEndedLine(rt, mark, first.body.pid!), "EarlyDrop");
        await waitForEnd(first.body.pid!);
        await settle(rt);
      },
    );

    await t.step(
      "the function sees beforeunload with reason cpu at the configured ratio",
      async () => {
        const mark = rt.stderr().length;
        // --dispatch-beforeunload-cpu-ratio=20 of a 2000 ms hard limit: the event fires at 400 ms.
        const result = await call(`${rt.url}/cpu-burner?ms=600`, {
          softMs: 10_000,
          hardMs: 2000,
          force: true,
        });
        assert.equal(result.status, 200, JSON.stringify(result.body));
        await waitForLog(rt, mark, /\[fn:cpu-burner\] beforeunload reason=cpu\n/);
        assert.ok(await isAlive(result.body.pid!), "a warning must not end the worker");
        await settle(rt);
      },
    );

    await t.step(
      "a beforeunload handler that spins is still killed at the hard limit",
      async () => {
        const mark = rt.stderr().length;
        const result = await call(`${rt.url}/beforeunload-spinner/burn?ms=4000`, {
          softMs: 10_000,
          hardMs: 600,
          force: true,
        });
        assert.deepEqual([result.status, result.body], [500, CANCELLED]);
        assert.ok(result.elapsedMs < 5000, `stopped only after ${result.elapsedMs.toFixed(0)} ms`);
        const [, pid] = await waitForLog(
          rt,
          mark,
          /worker (\d+) for "beforeunload-spinner" killed: CPUTime/,
        );
        assert.equal(await waitForEndedLine(rt, mark, Number(pid)), "CPUTime");
        assert.match(
          logSince(rt, mark),
          /\[fn:beforeunload-spinner\] beforeunload reason=cpu, spinning/,
        );
        await waitForEnd(Number(pid));
        await settle(rt);
      },
    );

    await t.step("under per_worker the hard limit counts the worker's whole life", async () => {
      // Six requests of 150 ms CPU each: none is over 500 ms, together they are.
      const limits = { softMs: 10_000, hardMs: 500 };
      const results = [await call(`${rt.url}/cpu-burner?ms=150`, { ...limits, force: true })];
      for (let i = 1; i < 6; i++) {
        results.push(await call(`${rt.url}/cpu-burner?ms=150`, limits));
      }
      const killed = results.findIndex((r) => r.status !== 200);
      assert.ok(killed > 0, `statuses ${results.map((r) => r.status)}`);
      assert.deepEqual(results[killed].body, CANCELLED);
      for (const r of results.slice(0, killed)) assert.equal(r.body.pid, results[0].body.pid);
      await settle(rt);
    });
  });
});

Deno.test("limits (per_worker) kill a worker whose resident memory grows past memoryLimitMb", async (t) => {
  await withRuntime({ args: [SUPABASE_API, "-v"] }, async (rt) => {
    for (const name of ["heap-hog", "array-buffer-hog"]) {
      await t.step(
        `${name} fails with WorkerRequestCancelled and is logged as Memory`,
        async () => {
          const mark = rt.stderr().length;
          const result = await call(`${rt.url}/${name}`, { memoryMb: 32, force: true });
          assert.deepEqual([result.status, result.body], [500, CANCELLED]);
          assert.ok(
            result.elapsedMs < 5000,
            `stopped only after ${result.elapsedMs.toFixed(0)} ms`,
          );
          // The supervisor's RSS watch usually wins; V8's own heap limit may, for heap-hog.
          const [, pid] = await waitForLog(
            rt,
            mark,
            new RegExp(
              `worker (\\d+) for "${name}" (killed: Memory limit|died of its memory limit)`,
            ),
          );
          await waitForEnd(Number(pid));
          assert.equal((await call(`${rt.url}/echo`)).status, 200);
          await settle(rt);
        },
      );
    }
  });
});

Deno.test("limits (per_worker) tell the function about its memory limit before killing it", async () => {
  const args = [SUPABASE_API, "--dispatch-beforeunload-memory-ratio=50"];
  await withRuntime({ args }, async (rt) => {
    const mark = rt.stderr().length;
    const result = await call(`${rt.url}/memory-warning`, { memoryMb: 32, force: true });
    assert.deepEqual([result.status, result.body], [500, CANCELLED]);
    await waitForLog(rt, mark, /\[fn:memory-warning\] beforeunload reason=memory/);
    await settle(rt);
  });
});

Deno.test("limits (per_worker) retire a worker at half its wall clock and kill it at the full time", async (t) => {
  const args = [SUPABASE_API, "-v", "--dispatch-beforeunload-wall-clock-ratio=50"];
  await withRuntime({ args }, async (rt) => {
    await t.step(
      "a request still running at workerTimeoutMs fails with WorkerRequestCancelled",
      async () => {
        const mark = rt.stderr().length;
        const result = await call(`${rt.url}/slow?ms=1500`, { timeoutMs: 600, force: true });
        assert.deepEqual([result.status, result.body], [500, CANCELLED]);
        const [, pid] = await waitForLog(rt, mark, /worker (\d+) for "slow" killed: WallClockTime/);
        await waitForEnd(Number(pid));
        await settle(rt);
      },
    );

    await t.step(
      "past half the wall clock new requests go to a new worker; the old one finishes",
      async () => {
        // Retired at 500 ms (up to one 50 ms sampler tick late), killed at 1000 ms.
        const limits = { timeoutMs: 1000 };
        const warm = await call(`${rt.url}/slow?ms=0`, { ...limits, force: true });
        assert.equal(warm.status, 200);
        // In flight from the worker's first moments to ~750 ms: across the retirement, done before
        // the kill. The second request comes at ~650 ms, after the retirement.
        const inFlight = call(`${rt.url}/slow?ms=750`, limits);
        await new Promise((resolve) => setTimeout(resolve, 650));
        const late = await call(`${rt.url}/slow?ms=0`, limits);
        const early = await inFlight;
        assert.deepEqual([early.status, late.status], [200, 200]);
        assert.equal(early.body.pid, warm.body.pid, "the in-flight request ran in the old worker");
        assert.notEqual(late.body.pid, warm.body.pid, "a retired worker took a new request");
        await waitForEnd(warm.body.pid!);
        await settle(rt);
      },
    );

    await t.step(
      "the function sees beforeunload wall_clock, then early_drop when it ends",
      async () => {
        const mark = rt.stderr().length;
        // --dispatch-beforeunload-wall-clock-ratio=50: the event fires with the retirement at 500 ms,
        // the request ends at 700 ms, the early drop follows, all before the kill at 1000 ms.
        const result = await call(`${rt.url}/beforeunload-logger/sleep?ms=700`, {
          timeoutMs: 1000,
          force: true,
        });
        assert.equal(result.status, 200, JSON.stringify(result.body));
        assert.equal(await waitForEndedLine(rt, mark, result.body.pid!), "EarlyDrop");
        await waitForEnd(result.body.pid!);
        const reasons = [...logSince(rt, mark).matchAll(/beforeunload reason=(\w+)/g)].map((m) =>
          m[1]
        );
        assert.deepEqual(reasons, ["wall_clock", "early_drop"]);
        await settle(rt);
      },
    );
  });
});

Deno.test("limits (per_worker) fail only the requests of a worker that crashed", async (t) => {
  await withRuntime({ args: [SUPABASE_API] }, async (rt) => {
    await t.step(
      "an unhandled rejection fails the in-flight request; the next gets a new worker",
      async () => {
        const before = await call(`${rt.url}/unhandled-rejection`, { force: true });
        assert.equal(before.status, 200);
        const boom = await call(`${rt.url}/unhandled-rejection/boom`);
        assert.equal(boom.status, 500);
        assert.equal(boom.body.kind, "InvalidWorkerResponse");
        assert.match(boom.body.msg!, /^InvalidWorkerResponse: /);
        const after = await call(`${rt.url}/unhandled-rejection`);
        assert.equal(after.status, 200);
        assert.notEqual(after.body.pid, before.body.pid);
        await waitForEnd(before.body.pid!);
        await settle(rt);
      },
    );

    await t.step(
      "a worker SIGKILLed from outside fails its request at once; the next works",
      async () => {
        const before = await call(`${rt.url}/slow?ms=0`, { force: true });
        const inFlight = call(`${rt.url}/slow?ms=3000`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        Deno.kill(before.body.pid!, "SIGKILL");
        const killed = await inFlight;
        assert.equal(killed.status, 500);
        assert.equal(killed.body.kind, "InvalidWorkerResponse");
        assert.ok(killed.elapsedMs < 2500, `answered only after ${killed.elapsedMs.toFixed(0)} ms`);
        const after = await call(`${rt.url}/slow?ms=0`);
        assert.equal(after.status, 200);
        assert.notEqual(after.body.pid, before.body.pid);
        await settle(rt);
      },
    );
  });
});

Deno.test("limits (per_request) count CPU time and wall clock per request", async (t) => {
  const args = [SUPABASE_API, "-v", "--policy=per_request", "--max-parallelism=1"];
  await withRuntime({ args }, async (rt) => {
    await t.step(
      "sequential requests whose total CPU exceeds the hard limit all succeed",
      async () => {
        // Six requests of 150 ms CPU each on one worker: each under 500 ms, together over it.
        const limits = { softMs: 10_000, hardMs: 500 };
        const results = [];
        for (let i = 0; i < 6; i++) {
          results.push(await call(`${rt.url}/cpu-burner?ms=150`, limits));
        }
        assert.deepEqual(results.map((r) => r.status), Array(6).fill(200));
        assert.equal(new Set(results.map((r) => r.body.pid)).size, 1, "expected one worker");
      },
    );

    await t.step(
      "sequential requests whose total time exceeds workerTimeoutMs all succeed",
      async () => {
        const limits = { timeoutMs: 600 };
        const results = [];
        for (let i = 0; i < 4; i++) results.push(await call(`${rt.url}/slow?ms=200`, limits));
        assert.deepEqual(results.map((r) => r.status), Array(4).fill(200));
        assert.equal(new Set(results.map((r) => r.body.pid)).size, 1, "expected one worker");
      },
    );

    // Regression: a request waiting for the only worker was handed it in the moment after the
    // supervisor had SIGKILLed it for another request's CPU time (the killed request's end woke the
    // waiters before the exit was processed), and failed with WorkerRequestCancelled although it
    // never ran. Killed workers are no longer ready (50de2ba).
    await t.step(
      "a request waiting for a worker that is then killed gets a new worker",
      async () => {
        const limits = { softMs: 10_000, hardMs: 500 };
        const hog = call(`${rt.url}/cpu-burner?ms=3000`, limits);
        await new Promise((resolve) => setTimeout(resolve, 200));
        const waiting = await call(`${rt.url}/cpu-burner?ms=0`, limits);
        assert.deepEqual((await hog).body, CANCELLED);
        assert.equal(waiting.status, 200, JSON.stringify(waiting.body));
      },
    );

    await t.step("one request over the hard limit is still killed", async () => {
      const mark = rt.stderr().length;
      const result = await call(`${rt.url}/busy-loop`, { softMs: 100, hardMs: 300 });
      assert.deepEqual([result.status, result.body], [500, CANCELLED]);
      assert.ok(result.elapsedMs < 5000, `stopped only after ${result.elapsedMs.toFixed(0)} ms`);
      const [, pid] = await waitForLog(rt, mark, /worker (\d+) for "busy-loop" killed: CPUTime/);
      await waitForEnd(Number(pid));
    });
  });
});
