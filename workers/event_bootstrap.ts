/**
 * Entry of the event worker process (`--event-worker DIR`). Installs Supabase's `EventManager`
 * global, an async iterable of the runtime's events (one JSON object per stdin line), then loads
 * the event module. Exits when stdin closes, so it never outlives the main runtime.
 */

/** One runtime event, with Supabase's field names. */
interface RuntimeEvent {
  timestamp: string;
  event_type: string;
  event: Record<string, unknown>;
  metadata: { service_path: string | null; execution_id: string | null };
}

const queue: RuntimeEvent[] = [];
const waiting: ((event: IteratorResult<RuntimeEvent>) => void)[] = [];
let ended = false;

function deliver(event: RuntimeEvent): void {
  const next = waiting.shift();
  if (next) next({ value: event, done: false });
  else queue.push(event);
}

/** Supabase's `EventManager`: `for await (const event of new EventManager())`. */
class EventManager implements AsyncIterable<RuntimeEvent> {
  [Symbol.asyncIterator](): AsyncIterator<RuntimeEvent> {
    return {
      next: () => {
        const event = queue.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => waiting.push(resolve));
      },
    };
  }
}

Object.defineProperty(globalThis, "EventManager", { value: EventManager, configurable: true });

const entry = Deno.args[0];
if (!entry) throw new Error("event worker: no entry module given");

(async () => {
  let pending = "";
  for await (const text of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    pending += text;
    let newline: number;
    while ((newline = pending.indexOf("\n")) !== -1) {
      const line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      try {
        deliver(JSON.parse(line));
      } catch {
        // Only the runtime writes here; a torn line is dropped.
      }
    }
  }
  // The runtime is gone: iteration ends, and the process with it once the module is done.
  ended = true;
  for (const resolve of waiting.splice(0)) resolve({ value: undefined, done: true });
})();

await import(entry);
