/**
 * Errors. Two layers: the Supabase-compatible classes that main services catch on `Deno.errors`
 * (exact names and messages), and the internal {@linkcode RuntimeError} with a code and a cause,
 * which the worker API translates into the former in one place (`user_workers.ts`).
 */

/** `create()` could not give a worker: boot failed, or no slot within the wait timeout. */
export class InvalidWorkerCreation extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidWorkerCreation";
  }
}

/** The worker failed to answer: top-level throw, crash, broken connection. */
export class InvalidWorkerResponse extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "InvalidWorkerResponse";
  }
}

/** The supervisor ended the worker (CPU, memory, wall clock, shutdown) while the request waited. */
export class WorkerRequestCancelled extends Error {
  constructor(message = "request has been cancelled by supervisor", options?: ErrorOptions) {
    super(message, options);
    this.name = "WorkerRequestCancelled";
  }
}

/** The worker stopped taking requests; the caller should `create()` again. */
export class WorkerAlreadyRetired extends Error {
  constructor(
    message = "request cannot be handled because the worker has already retired",
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "WorkerAlreadyRetired";
  }
}

/** No response head arrived within the request idle timeout. */
export class WorkerRequestIdleTimeout extends Error {
  constructor(message = "request timed out", options?: ErrorOptions) {
    super(message, options);
    this.name = "WorkerRequestIdleTimeout";
  }
}

/** The Supabase error classes, by the names main services look them up with. */
export const WORKER_ERROR_CLASSES = {
  InvalidWorkerCreation,
  InvalidWorkerResponse,
  WorkerRequestCancelled,
  WorkerAlreadyRetired,
  WorkerRequestIdleTimeout,
} as const;

/** Puts the Supabase error classes on `Deno.errors` (idempotent). */
export function installWorkerErrorClasses(): void {
  for (const [name, cls] of Object.entries(WORKER_ERROR_CLASSES)) {
    Object.defineProperty(Deno.errors, name, {
      value: cls,
      writable: false,
      enumerable: true,
      configurable: true,
    });
  }
}

/** What went wrong inside the runtime, independent of HTTP and of the Supabase surface. */
export type RuntimeErrorCode =
  /** The worker's module graph failed, or its process exited before it was ready. */
  | "BOOT_FAILED"
  /** The worker did not report ready within the allowed time. */
  | "BOOT_TIMEOUT"
  /** No worker slot became free within the request wait timeout. */
  | "POOL_TIMEOUT"
  /** The user module threw while evaluating, or registered no handler. */
  | "EVALUATION_FAILED"
  /** The worker process ended (or the connection broke) while a request was in flight. */
  | "WORKER_CRASHED"
  /** The supervisor ended the worker on purpose (limit, shutdown) while a request was in flight. */
  | "WORKER_KILLED"
  /** The worker no longer takes new requests. */
  | "WORKER_RETIRED"
  /** The worker answered with something that is not valid HTTP/1.1. */
  | "BAD_RESPONSE"
  /** The response head did not arrive within the idle timeout. */
  | "IDLE_TIMEOUT";

/** An internal runtime failure with a machine-readable code and the underlying cause. */
export class RuntimeError extends Error {
  /** Which failure this is. */
  readonly code: RuntimeErrorCode;

  constructor(code: RuntimeErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "RuntimeError";
    this.code = code;
  }
}

/** A request body grew past `--max-request-body-size` while it was being relayed. */
export class PayloadTooLargeError extends Error {
  constructor(message = "Request body is larger than the runtime accepts", options?: ErrorOptions) {
    super(message, options);
    this.name = "PayloadTooLargeError";
  }
}

/** A bad flag, environment value or option, found before anything starts (CLI exit 2). */
export class ConfigError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConfigError";
  }
}

/** Turns an internal failure into the Supabase class a main service expects. */
export function toWorkerApiError(error: unknown): Error {
  if (!(error instanceof RuntimeError)) {
    return error instanceof Error ? error : new InvalidWorkerResponse(String(error));
  }
  const options = { cause: error.cause ?? error };
  switch (error.code) {
    case "BOOT_FAILED":
      return new InvalidWorkerCreation(`worker boot error: ${error.message}`, options);
    case "BOOT_TIMEOUT":
    case "POOL_TIMEOUT":
      return new InvalidWorkerCreation("worker did not respond in time", options);
    case "EVALUATION_FAILED":
    case "WORKER_CRASHED":
    case "BAD_RESPONSE":
      return new InvalidWorkerResponse(error.message, options);
    case "WORKER_KILLED":
      return new WorkerRequestCancelled(undefined, options);
    case "WORKER_RETIRED":
      return new WorkerAlreadyRetired(undefined, options);
    case "IDLE_TIMEOUT":
      return new WorkerRequestIdleTimeout(undefined, options);
  }
}
