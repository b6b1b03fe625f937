/**
 * Worker reuse as a main service sees it through `EdgeRuntime.userWorkers.create()`: reuse per
 * servicePath, `forceCreate`, `--max-parallelism` with `--request-wait-timeout`, and the three
 * policies (`per_worker`, `per_request`, `oneshot`).
 */

import assert from "node:assert/strict";
import { fetchText, fixtureMain, waitFor, withRuntime } from "../test_utils.ts";

const SUPABASE_API = "--main-service=" + fixtureMain("supabase-api");

/** Sends a request through the `supabase-api` main service and returns the status and JSON body. */
async function call<T = { pid: number }>(
  url: string,
  headers?: HeadersInit,
): Promise<{ status: number; body: T }> {
  const { status, body } = await fetchText(url, { headers });
  try {
    return { status, body: JSON.parse(body) as T };
  } catch {
    throw new Error(`Expected JSON from ${url}, got ${status}: ${body}`);
  }
}

/** Sends `count` requests at once. */
function callConcurrently<T = { pid: number }>(url: string, count: number) {
  return Promise.all(Array.from({ length: count }, () => call<T>(url)));
}

Deno.test("pool (per_worker) shares one worker per servicePath unless forceCreate", async (t) => {
  await withRuntime({ args: [SUPABASE_API, "--policy=per_worker"] }, async (rt) => {
    await t.step("concurrent first requests share one boot and one process", async () => {
      const results = await callConcurrently(`${rt.url}/slow?ms=200`, 10);
      assert.deepEqual(results.map((r) => r.status), Array(10).fill(200));
      const pids = new Set(results.map((r) => r.body.pid));
      assert.equal(pids.size, 1, `expected one worker, got pids ${[...pids]}`);
      assert.deepEqual(await rt.childPids(), [...pids]);
    });

    await t.step("sequential requests reuse the worker", async () => {
      const first = await call(`${rt.url}/echo`);
      const second = await call(`${rt.url}/echo`);
      assert.equal(first.status, 200);
      assert.equal(second.body.pid, first.body.pid);
    });

    await t.step("forceCreate starts a new worker", async () => {
      const reused = await call(`${rt.url}/echo`);
      const forced = await call(`${rt.url}/echo`, { "x-force-create": "true" });
      assert.equal(forced.status, 200);
      assert.notEqual(forced.body.pid, reused.body.pid);
      const children = await rt.childPids();
      assert.ok(children.includes(forced.body.pid) && children.includes(reused.body.pid));
    });
  });
});

/** Checks that one of two results succeeded and the other timed out waiting for a worker. */
function assertOneTimedOut(results: { status: number; body: { pid?: number } }[]): void {
  const sorted = [...results].sort((a, b) => a.status - b.status);
  assert.equal(sorted[0].status, 200);
  assert.equal(typeof sorted[0].body.pid, "number");
  assert.deepEqual(sorted[1], {
    status: 500,
    body: {
      msg: "InvalidWorkerCreation: worker did not respond in time",
      kind: "InvalidWorkerCreation",
    },
  });
}

/** Sends two `/slow?ms=300` at once and checks that one worker served them one after the other. */
async function assertServedOneAfterOther(url: string): Promise<void> {
  const started = performance.now();
  const results = await callConcurrently(`${url}/slow?ms=300`, 2);
  const elapsedMs = performance.now() - started;
  assert.deepEqual(results.map((r) => r.status), [200, 200]);
  assert.equal(results[1].body.pid, results[0].body.pid, "max-parallelism 1 allows one worker");
  assert.ok(elapsedMs >= 600, `the requests overlapped: both done in ${elapsedMs.toFixed(0)}ms`);
}

Deno.test("pool (per_request) fails create() when no worker frees up within the request wait timeout", async (t) => {
  const args = [
    SUPABASE_API,
    "--policy=per_request",
    "--max-parallelism=1",
    "--request-wait-timeout=300",
  ];
  await withRuntime({ args }, async (rt) => {
    // Regression: a just-booted worker was visible to callers waiting on the slot before the caller
    // that booted it had leased it, so both requests ran in it at once.
    await t.step("while the only worker is still booting", async () => {
      assertOneTimedOut(await callConcurrently(`${rt.url}/slow?ms=1000`, 2));
    });

    await t.step("while the only worker is busy", async () => {
      assert.equal((await call(`${rt.url}/slow?ms=0`)).status, 200);
      assertOneTimedOut(await callConcurrently(`${rt.url}/slow?ms=1000`, 2));
    });
  });
});

Deno.test("pool (per_request) makes create() wait for a busy worker within the request wait timeout", async (t) => {
  const args = [
    SUPABASE_API,
    "--policy=per_request",
    "--max-parallelism=1",
    "--request-wait-timeout=5000",
  ];
  await withRuntime({ args }, async (rt) => {
    // Regression: see the test above.
    await t.step("while the only worker is still booting", async () => {
      await assertServedOneAfterOther(rt.url);
    });

    await t.step("while the only worker is busy", async () => {
      assert.equal((await call(`${rt.url}/slow?ms=0`)).status, 200);
      await assertServedOneAfterOther(rt.url);
    });

    await t.step("a fetch aborted before it was sent gives the worker back at once", async () => {
      const aborted = await call<{ msg: string }>(`${rt.url}/slow?ms=0`, {
        "x-abort-before-fetch": "true",
      });
      assert.equal(aborted.body.msg, "AbortError: The signal has been aborted");
      const startedAt = Date.now();
      assert.equal((await call(`${rt.url}/slow?ms=0`)).status, 200);
      // Without the release the next caller would wait out the 5 s lease.
      assert.ok(Date.now() - startedAt < 2500, `took ${Date.now() - startedAt} ms`);
    });
  });
});

Deno.test("pool (per_request) serves one request per worker, up to max-parallelism workers", async (t) => {
  const args = [SUPABASE_API, "--policy=per_request", "--max-parallelism=2"];
  await withRuntime({ args }, async (rt) => {
    await t.step("sequential requests reuse the idle worker", async () => {
      const first = await call(`${rt.url}/echo`);
      const second = await call(`${rt.url}/echo`);
      assert.equal(first.status, 200);
      assert.equal(second.body.pid, first.body.pid);
    });

    await t.step("concurrent requests run in different workers", async () => {
      const results = await callConcurrently(`${rt.url}/slow?ms=300`, 2);
      assert.deepEqual(results.map((r) => r.status), [200, 200]);
      assert.notEqual(results[0].body.pid, results[1].body.pid);
      const next = await call(`${rt.url}/slow?ms=0`);
      assert.ok(
        results.some((r) => r.body.pid === next.body.pid),
        "an idle worker is reused rather than a third one booted",
      );
    });
  });
});

Deno.test("pool (oneshot) gives every request a new worker that ends after its response", async (t) => {
  await withRuntime({ args: [SUPABASE_API, "--policy=oneshot"] }, async (rt) => {
    await t.step("sequential requests each get a new process and the old one ends", async () => {
      const seen: number[] = [];
      for (let i = 0; i < 3; i++) {
        const { status, body } = await call(`${rt.url}/echo`);
        assert.equal(status, 200);
        assert.ok(!seen.includes(body.pid), `pid ${body.pid} served twice`);
        seen.push(body.pid);
        await waitFor(
          async () => !(await rt.childPids()).includes(body.pid),
          3000,
          `oneshot worker ${body.pid} to end`,
        );
      }
    });

    await t.step(
      "concurrent forceCreate requests run one at a time, each in a new worker",
      async () => {
        const started = performance.now();
        const forced = { "x-force-create": "true" };
        const results = await Promise.all([
          call(`${rt.url}/slow?ms=200`, forced),
          call(`${rt.url}/slow?ms=200`, forced),
        ]);
        const elapsedMs = performance.now() - started;
        assert.deepEqual(results.map((r) => r.status), [200, 200]);
        assert.notEqual(results[0].body.pid, results[1].body.pid);
        assert.ok(elapsedMs >= 400, `the requests overlapped: done in ${elapsedMs.toFixed(0)}ms`);
      },
    );
  });
});
