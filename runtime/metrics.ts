/**
 * Runtime metrics in the Prometheus text format (version 0.0.4): requests relayed to functions by
 * status and latency, cold starts and boot time, worker ends by reason, and live worker figures.
 * A tiny writer rather than a library: the format is small and tested.
 */

/** Upper bounds (seconds) of the latency and boot-time histograms. */
const BUCKETS_S = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;

class Histogram {
  readonly counts = new Array<number>(BUCKETS_S.length).fill(0);
  count = 0;
  sum = 0;

  observe(seconds: number): void {
    this.count++;
    this.sum += seconds;
    for (let i = 0; i < BUCKETS_S.length; i++) if (seconds <= BUCKETS_S[i]) this.counts[i]++;
  }
}

/** One live worker, as the metrics see it. */
export interface WorkerFigures {
  functionName: string;
  rssBytes: number;
  cpuMs: number;
}

/** Figures read at scrape time. */
export interface ScrapeFigures {
  workers: readonly WorkerFigures[];
  receivedRequests: number;
  handledRequests: number;
  mainHeapUsedBytes: number;
  mainRssBytes: number;
  /** Events the event worker could not take (0 without one). */
  eventsDropped: number;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

function labels(pairs: Record<string, string>): string {
  const inner = Object.entries(pairs).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(",");
  return inner ? `{${inner}}` : "";
}

/** Collects runtime events and renders them for a scrape. */
export class RuntimeMetrics {
  readonly #requests = new Map<string, Map<string, number>>();
  readonly #latency = new Map<string, Histogram>();
  readonly #boots = new Map<string, Histogram>();
  readonly #ends = new Map<string, Map<string, number>>();

  /** One request a worker answered (`status`), or failed to (`status` "error"). */
  recordRequest(functionName: string, status: string, seconds: number): void {
    const byStatus = this.#requests.get(functionName) ?? new Map<string, number>();
    byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
    this.#requests.set(functionName, byStatus);
    let histogram = this.#latency.get(functionName);
    if (!histogram) this.#latency.set(functionName, histogram = new Histogram());
    histogram.observe(seconds);
  }

  /** One worker booted (a cold start). */
  recordBoot(functionName: string, seconds: number): void {
    let histogram = this.#boots.get(functionName);
    if (!histogram) this.#boots.set(functionName, histogram = new Histogram());
    histogram.observe(seconds);
  }

  /** One worker ended, for `reason`. */
  recordEnd(functionName: string, reason: string): void {
    const byReason = this.#ends.get(functionName) ?? new Map<string, number>();
    byReason.set(reason, (byReason.get(reason) ?? 0) + 1);
    this.#ends.set(functionName, byReason);
  }

  /** Renders every metric in the Prometheus text format. */
  render(figures: ScrapeFigures): string {
    const out: string[] = [];
    const family = (name: string, type: string, help: string) =>
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    const histograms = (name: string, help: string, byFunction: Map<string, Histogram>) => {
      family(name, "histogram", help);
      for (const [fn, h] of byFunction) {
        // Bucket counts are cumulative already: observe() counts a value in every bucket above it.
        BUCKETS_S.forEach((bound, i) => {
          out.push(`${name}_bucket${labels({ function: fn, le: String(bound) })} ${h.counts[i]}`);
        });
        out.push(`${name}_bucket${labels({ function: fn, le: "+Inf" })} ${h.count}`);
        out.push(`${name}_sum${labels({ function: fn })} ${h.sum}`);
        out.push(`${name}_count${labels({ function: fn })} ${h.count}`);
      }
    };

    family(
      "edge_runtime_function_requests_total",
      "counter",
      "Requests relayed to functions, by the status they were answered with.",
    );
    for (const [fn, byStatus] of this.#requests) {
      for (const [status, n] of byStatus) {
        out.push(`edge_runtime_function_requests_total${labels({ function: fn, status })} ${n}`);
      }
    }
    histograms(
      "edge_runtime_function_request_duration_seconds",
      "Time from relaying a request to its response head.",
      this.#latency,
    );
    histograms(
      "edge_runtime_worker_boot_duration_seconds",
      "Cold starts: time from spawning a worker to it being ready.",
      this.#boots,
    );
    family("edge_runtime_worker_ends_total", "counter", "Workers that ended, by reason.");
    for (const [fn, byReason] of this.#ends) {
      for (const [reason, n] of byReason) {
        out.push(`edge_runtime_worker_ends_total${labels({ function: fn, reason })} ${n}`);
      }
    }
    const live = new Map<string, { count: number; rss: number; cpu: number }>();
    for (const w of figures.workers) {
      const entry = live.get(w.functionName) ?? { count: 0, rss: 0, cpu: 0 };
      entry.count++;
      entry.rss += w.rssBytes;
      entry.cpu += w.cpuMs / 1000;
      live.set(w.functionName, entry);
    }
    family("edge_runtime_workers", "gauge", "Live workers.");
    for (const [fn, e] of live) {
      out.push(`edge_runtime_workers${labels({ function: fn })} ${e.count}`);
    }
    family(
      "edge_runtime_worker_resident_memory_bytes",
      "gauge",
      "Resident memory of the live workers, as last sampled.",
    );
    for (const [fn, e] of live) {
      out.push(`edge_runtime_worker_resident_memory_bytes${labels({ function: fn })} ${e.rss}`);
    }
    family(
      "edge_runtime_worker_cpu_seconds",
      "gauge",
      "CPU time used by the live workers, as last sampled.",
    );
    for (const [fn, e] of live) {
      out.push(`edge_runtime_worker_cpu_seconds${labels({ function: fn })} ${e.cpu}`);
    }
    const single = (name: string, type: string, help: string, value: number) => {
      family(name, type, help);
      out.push(`${name} ${value}`);
    };
    single(
      "edge_runtime_requests_received_total",
      "counter",
      "Requests received by the main runtime.",
      figures.receivedRequests,
    );
    single(
      "edge_runtime_requests_handled_total",
      "counter",
      "Requests the main runtime answered.",
      figures.handledRequests,
    );
    single(
      "edge_runtime_main_heap_used_bytes",
      "gauge",
      "V8 heap used by the main runtime.",
      figures.mainHeapUsedBytes,
    );
    single(
      "edge_runtime_main_resident_memory_bytes",
      "gauge",
      "Resident memory of the main runtime.",
      figures.mainRssBytes,
    );
    single(
      "edge_runtime_events_dropped_total",
      "counter",
      "Events dropped because the event worker fell behind or was gone.",
      figures.eventsDropped,
    );
    return out.join("\n") + "\n";
  }
}
