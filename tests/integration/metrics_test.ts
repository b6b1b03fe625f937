/**
 * Scraping /_internal/metrics: the Prometheus text parses, and counters move with requests, cold
 * starts and worker ends.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, withRuntime } from "../test_utils.ts";
import { parsePrometheus, sampleValue } from "../prometheus.ts";

Deno.test("GET /_internal/metrics counts requests, cold starts and worker ends", async () => {
  const args = [`--functions=${FUNCTION_FIXTURES}`, "--cpu-time-hard-limit-ms=300"];
  await withRuntime({ args }, async (rt) => {
    const scrape = async () =>
      parsePrometheus((await fetchText(`${rt.url}/_internal/metrics`)).body);
    for (let i = 0; i < 3; i++) assert.equal((await fetchText(`${rt.url}/echo`)).status, 200);
    assert.equal((await fetchText(`${rt.url}/status-codes?status=404`)).status, 404);
    assert.equal((await fetchText(`${rt.url}/busy-loop`)).status, 546);
    const { samples } = await scrape();
    assert.equal(
      sampleValue(samples, "edge_runtime_function_requests_total", {
        function: "echo",
        status: "200",
      }),
      3,
    );
    assert.equal(
      sampleValue(samples, "edge_runtime_function_requests_total", {
        function: "status-codes",
        status: "404",
      }),
      1,
    );
    assert.equal(
      sampleValue(samples, "edge_runtime_function_requests_total", {
        function: "busy-loop",
        status: "error",
      }),
      1,
    );
    assert.equal(
      sampleValue(samples, "edge_runtime_function_request_duration_seconds_count", {
        function: "echo",
      }),
      3,
    );
    assert.equal(
      sampleValue(samples, "edge_runtime_worker_boot_duration_seconds_count", { function: "echo" }),
      1,
    );
    assert.equal(
      sampleValue(samples, "edge_runtime_worker_ends_total", {
        function: "busy-loop",
        reason: "CPUTime",
      }),
      1,
    );
    assert.equal(sampleValue(samples, "edge_runtime_workers", { function: "echo" }), 1);
    assert.ok(sampleValue(samples, "edge_runtime_requests_received_total")! >= 5);
  });
});
