import assert from "node:assert/strict";
import { RuntimeMetrics } from "../../runtime/metrics.ts";
import { parsePrometheus } from "../prometheus.ts";

const FIGURES = {
  workers: [
    { functionName: "hello", rssBytes: 1000, cpuMs: 500 },
    { functionName: "hello", rssBytes: 2000, cpuMs: 250 },
    { functionName: 'odd"name\\', rssBytes: 10, cpuMs: 0 },
  ],
  receivedRequests: 7,
  handledRequests: 6,
  mainHeapUsedBytes: 123,
  mainRssBytes: 456,
  eventsDropped: 3,
};

Deno.test("RuntimeMetrics.render() writes counters, cumulative histograms and gauges", () => {
  const metrics = new RuntimeMetrics();
  metrics.recordRequest("hello", "200", 0.003);
  metrics.recordRequest("hello", "200", 0.2);
  metrics.recordRequest("hello", "error", 20);
  metrics.recordBoot("hello", 0.04);
  metrics.recordEnd("hello", "CPUTime");
  metrics.recordEnd("hello", "CPUTime");
  const { types, samples } = parsePrometheus(metrics.render(FIGURES));
  const value = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) =>
      s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
    )?.value;
  assert.equal(types.get("edge_runtime_function_requests_total"), "counter");
  assert.equal(value("edge_runtime_function_requests_total", { status: "200" }), 2);
  assert.equal(value("edge_runtime_function_requests_total", { status: "error" }), 1);
  const latency = "edge_runtime_function_request_duration_seconds";
  assert.equal(types.get(latency), "histogram");
  assert.equal(value(`${latency}_bucket`, { le: "0.005" }), 1);
  assert.equal(value(`${latency}_bucket`, { le: "0.25" }), 2);
  assert.equal(value(`${latency}_bucket`, { le: "10" }), 2);
  assert.equal(value(`${latency}_bucket`, { le: "+Inf" }), 3);
  assert.equal(value(`${latency}_count`), 3);
  assert.ok(Math.abs(value(`${latency}_sum`)! - 20.203) < 1e-9);
  assert.equal(value("edge_runtime_worker_boot_duration_seconds_count"), 1);
  assert.equal(value("edge_runtime_worker_ends_total", { reason: "CPUTime" }), 2);
  assert.equal(value("edge_runtime_workers", { function: "hello" }), 2);
  assert.equal(value("edge_runtime_worker_resident_memory_bytes", { function: "hello" }), 3000);
  assert.equal(value("edge_runtime_worker_cpu_seconds", { function: "hello" }), 0.75);
  assert.equal(value("edge_runtime_workers", { function: 'odd"name\\' }), 1);
  assert.equal(value("edge_runtime_requests_received_total"), 7);
  assert.equal(value("edge_runtime_main_resident_memory_bytes"), 456);
  assert.equal(value("edge_runtime_events_dropped_total"), 3);
});

Deno.test("RuntimeMetrics.render() is valid with nothing recorded", () => {
  const { samples } = parsePrometheus(
    new RuntimeMetrics().render({ ...FIGURES, workers: [] }),
  );
  assert.deepEqual(
    samples.map((s) => s.name),
    [
      "edge_runtime_requests_received_total",
      "edge_runtime_requests_handled_total",
      "edge_runtime_main_heap_used_bytes",
      "edge_runtime_main_resident_memory_bytes",
      "edge_runtime_events_dropped_total",
    ],
  );
});
