/**
 * Links a `Request` a main service built to the one `Deno.serve` gave it, as Supabase's
 * `EdgeRuntime.applySupabaseTag(original, copy)` does: a WebSocket upgrade needs the original,
 * since only it holds the client's connection. Imports nothing.
 */

const originals = new WeakMap<Request, Request>();

/** Records that `copy` stands for `original` (the request `Deno.serve` handed over). */
export function tagRequest(original: Request, copy: Request): void {
  originals.set(copy, originalRequestOf(original));
}

/** The request `Deno.serve` handed over that `request` stands for (itself when untagged). */
export function originalRequestOf(request: Request): Request {
  return originals.get(request) ?? request;
}
