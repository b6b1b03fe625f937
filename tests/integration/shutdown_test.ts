/**
 * How the runtime ends (DESIGN §3): SIGTERM drains in-flight requests and exits 0 (1 when the
 * graceful timeout cut the drain short), SIGINT exits at once, and no worker outlives the runtime,
 * not even when the runtime itself is SIGKILLed (the workers' stdin lifeline closes).
 */

import assert from "node:assert/strict";
import {
  fetchText,
  FUNCTION_FIXTURES,
  isAlive,
  type RuntimeHandle,
  waitFor,
  withRuntime,
} from "../test_utils.ts";

const FUNCTIONS_ARG = `--functions=${FUNCTION_FIXTURES}`;

/** Boots the `slow` and `echo` workers and returns the runtime's child pids. */
async function warmWorkers(runtime: RuntimeHandle): Promise<number[]> {
  assert.equal((await fetchText(`${runtime.url}/slow?ms=0`)).status, 200);
  assert.equal((await fetchText(`${runtime.url}/echo`)).status, 200);
  const pids = await runtime.childPids();
  assert.ok(pids.length >= 2, `expected two workers, found ${pids.join(", ")}`);
  return pids;
}

/** True when a TCP connection to the runtime's listener is accepted. */
async function acceptsConnections(url: string): Promise<boolean> {
  const { hostname, port } = new URL(url);
  try {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Waits until none of `pids` is alive. */
async function waitForExit(pids: number[], timeoutMs: number): Promise<void> {
  await waitFor(
    async () => (await Promise.all(pids.map(isAlive))).every((alive) => !alive),
    timeoutMs,
    `workers ${pids.join(", ")} to end`,
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

Deno.test("SIGTERM finishes in-flight requests and streams, refuses new ones, exits 0", async () => {
  await withRuntime({ args: [FUNCTIONS_ARG] }, async (runtime) => {
    assert.equal((await fetchText(`${runtime.url}/slow-stream/cancels`)).status, 200);
    const workers = await warmWorkers(runtime);
    using client = Deno.createHttpClient({});
    const startedAt = performance.now();
    const inflight = fetch(`${runtime.url}/slow?ms=800`, { client })
      .then(async (response) => ({ status: response.status, body: await response.text() }));
    const stream = fetch(`${runtime.url}/slow-stream?chunks=6&ms=150`, { client })
      .then(async (response) => ({ status: response.status, body: await response.text() }));
    // Let both requests reach their workers before the signal.
    await delay(150);
    runtime.kill("SIGTERM");

    await waitFor(
      async () => !(await acceptsConnections(runtime.url)),
      500,
      "the listener to close after SIGTERM",
    );
    const answer = await inflight;
    assert.equal(answer.status, 200, answer.body);
    assert.ok(workers.includes(JSON.parse(answer.body).pid));
    assert.ok(performance.now() - startedAt >= 800);
    const streamed = await stream;
    assert.equal(streamed.status, 200);
    assert.deepEqual(
      streamed.body.trim().split("\n").map((line) => line.split(" at ")[0]),
      ["chunk 0", "chunk 1", "chunk 2", "chunk 3", "chunk 4", "chunk 5"],
    );

    const status = await runtime.status;
    assert.equal(status.code, 0);
    await waitForExit(workers, 3000);
  });
});

Deno.test("SIGTERM exits 1 when in-flight requests outlast --graceful-exit-timeout", async () => {
  await withRuntime({ args: [FUNCTIONS_ARG, "--graceful-exit-timeout=1"] }, async (runtime) => {
    const workers = await warmWorkers(runtime);
    using client = Deno.createHttpClient({});
    const inflight = fetch(`${runtime.url}/slow?ms=5000`, { client }).then(
      async (response) => {
        await response.body?.cancel();
        return response.status;
      },
      () => "failed",
    );
    await delay(150);
    const signalledAt = performance.now();
    runtime.kill("SIGTERM");

    const status = await runtime.status;
    const exitMs = performance.now() - signalledAt;
    assert.equal(status.code, 1);
    assert.ok(exitMs >= 900, `exited after ${exitMs} ms, before the graceful timeout`);
    assert.ok(exitMs < 2000, `exited after ${exitMs} ms`);
    assert.notEqual(await inflight, 200);
    await waitForExit(workers, 3000);
  });
});

Deno.test("SIGINT exits at once and ends every worker", async () => {
  await withRuntime({ args: [FUNCTIONS_ARG] }, async (runtime) => {
    const workers = await warmWorkers(runtime);
    const signalledAt = performance.now();
    runtime.kill("SIGINT");
    await runtime.status;
    const exitMs = performance.now() - signalledAt;
    assert.ok(exitMs < 1000, `exited after ${exitMs} ms`);
    await waitForExit(workers, 3000);
  });
});

Deno.test("workers end on their own when the runtime is SIGKILLed", async () => {
  await withRuntime({ args: [FUNCTIONS_ARG] }, async (runtime) => {
    const workers = await warmWorkers(runtime);
    try {
      runtime.kill("SIGKILL");
      assert.equal((await runtime.status).signal, "SIGKILL");
      // Nobody kills them now: each must notice its stdin (the lifeline) closed.
      await waitForExit(workers, 3000);
    } finally {
      for (const pid of workers) {
        if (!(await isAlive(pid))) continue;
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // It ended between the check and the signal.
        }
      }
    }
  });
});
