/**
 * Watches clients' `request.signal` only for exchanges whose response head is slow to come.
 */

/** Period of the sweep that starts watching clients' signals for slow response heads. */
const CLIENT_WATCH_PERIOD_MS = 20;

/** An exchange waiting for its response head, with the hook that aborts it. */
export interface PendingHead {
  /** The client's request; its `signal` is read only once the head is late. */
  readonly request: Request;
  readonly onAbort: (event: Event) => void;
  /** Set by the first sweep that sees the head still pending; the next one starts watching. */
  seen: boolean;
  watching: boolean;
}

/**
 * Watches clients' `request.signal` only for exchanges whose response head is slow to come
 * (pending across two sweeps, so 20 to 40 ms). Reading `request.signal` of a `Deno.serve`
 * request makes Deno set up a cancellation watch for it, which cost a sizeable share of the
 * relay's throughput in our measurements; fast answers never need it, and a client that leaves
 * mid-body is seen through the body stream's `cancel()`. One shared timer runs while anything is
 * pending.
 */
class ClientAbortWatch {
  readonly #pending = new Set<PendingHead>();
  #timer: ReturnType<typeof setInterval> | undefined;

  add(head: PendingHead): void {
    this.#pending.add(head);
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#sweep(), CLIENT_WATCH_PERIOD_MS);
    Deno.unrefTimer(this.#timer as unknown as number);
  }

  delete(head: PendingHead): void {
    if (!this.#pending.delete(head)) return;
    if (head.watching) head.request.signal.removeEventListener("abort", head.onAbort);
    if (this.#pending.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #sweep(): void {
    for (const head of this.#pending) {
      if (head.watching) continue;
      if (!head.seen) {
        head.seen = true;
        continue;
      }
      head.watching = true;
      const { signal } = head.request;
      signal.addEventListener("abort", head.onAbort);
      if (signal.aborted) head.onAbort(new Event("abort"));
    }
  }
}

/** The one watch of the process. */
export const clientAbortWatch = new ClientAbortWatch();
