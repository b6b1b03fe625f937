/**
 * Runtime events for the event worker, with Supabase's shapes: `{ timestamp, event_type, event,
 * metadata: { service_path, execution_id } }`. Events are dropped (and counted) rather than
 * buffered without bound when the event worker falls behind or is gone.
 */

import type { Logger } from "./log.ts";
import type { EventProcess } from "./supervisor.ts";

/** Supabase's event types. */
export type RuntimeEventType = "Boot" | "BootFailure" | "UncaughtException" | "Shutdown" | "Log";

/** Which worker an event is about. */
export interface EventMetadata {
  service_path: string;
  execution_id: string;
}

/** Warn about drops at most this often (every N dropped events). */
const DROP_WARNING_EVERY = 1000;

/** Sends events to the event worker process. */
export class EventStream {
  readonly #process: EventProcess;
  readonly #logger: Logger;
  #dropped = 0;

  constructor(process: EventProcess, logger: Logger) {
    this.#process = process;
    this.#logger = logger;
  }

  /** Events dropped so far (the event worker was slow or gone). */
  get dropped(): number {
    return this.#dropped;
  }

  emit(type: RuntimeEventType, event: Record<string, unknown>, metadata: EventMetadata): void {
    const line = JSON.stringify({
      timestamp: new Date().toISOString(),
      event_type: type,
      event,
      metadata,
    });
    if (this.#process.send(line)) return;
    if (this.#dropped++ % DROP_WARNING_EVERY === 0) {
      this.#logger.warn(`event worker is not keeping up: ${this.#dropped} event(s) dropped`);
    }
  }

  /** Ends the event stream; the event worker gets `graceMs` to finish. */
  close(graceMs: number): Promise<void> {
    return this.#process.close(graceMs);
  }
}
