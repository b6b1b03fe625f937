/**
 * Facts about inbound requests kept beside them: the client's address (for `x-forwarded-for`),
 * and which request a copy stands for, as Supabase's `EdgeRuntime.applySupabaseTag(original,
 * copy)` records (a WebSocket upgrade needs the original, which holds the client's connection).
 * Imports nothing.
 */

const originals = new WeakMap<Request, Request>();
const clientAddresses = new WeakMap<Request, string>();

/** Records the address of the client that sent `request` (the runtime's listener does). */
export function tagClientAddress(request: Request, address: string): void {
  clientAddresses.set(request, address);
}

/** The client address of `request` or of the request it stands for, if known. */
export function clientAddressOf(request: Request): string | undefined {
  return clientAddresses.get(request) ?? clientAddresses.get(originalRequestOf(request));
}

/** Records that `copy` stands for `original` (the request `Deno.serve` handed over). */
export function tagRequest(original: Request, copy: Request): void {
  originals.set(copy, originalRequestOf(original));
}

/** The request `Deno.serve` handed over that `request` stands for (itself when untagged). */
export function originalRequestOf(request: Request): Request {
  return originals.get(request) ?? request;
}
