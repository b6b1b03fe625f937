/**
 * The built-in main service's one table from failure to HTTP answer (Supabase CLI parity), and the
 * one function that builds error responses from it. Bodies are generic: causes and stacks go to
 * the logs only.
 */

import {
  InvalidWorkerCreation,
  InvalidWorkerResponse,
  PayloadTooLargeError,
  WorkerAlreadyRetired,
  WorkerRequestCancelled,
  WorkerRequestIdleTimeout,
} from "../errors.ts";

/** Every answer the default main service gives on its own behalf. */
export type DefaultMainFailure =
  | "function_not_found"
  | "boot_error"
  | "worker_error"
  | "worker_limit"
  | "worker_timeout"
  | "worker_retired"
  | "client_closed"
  | "payload_too_large"
  | "internal";

interface FailureAnswer {
  status: number;
  /** JSON body, or a plain-text string. */
  body: Record<string, string> | string | null;
  /** Whether the cause is worth an error log line. */
  shouldLog: boolean;
}

/** Status and body of each failure (Supabase CLI `functions serve` wording). */
export const FAILURE_ANSWERS: Record<DefaultMainFailure, FailureAnswer> = {
  function_not_found: { status: 404, body: "Function not found", shouldLog: false },
  boot_error: {
    status: 503,
    body: { code: "BOOT_ERROR", message: "Worker failed to boot (please check logs)" },
    shouldLog: true,
  },
  worker_error: {
    status: 500,
    body: { code: "WORKER_ERROR", message: "Function exited due to an error (please check logs)" },
    shouldLog: true,
  },
  worker_limit: {
    status: 546,
    body: {
      code: "WORKER_LIMIT",
      message: "Worker failed to respond due to a resource limit (please check logs)",
    },
    shouldLog: true,
  },
  worker_timeout: {
    status: 504,
    body: {
      code: "WORKER_TIMEOUT",
      message: "Worker failed to respond in time (please check logs)",
    },
    shouldLog: true,
  },
  worker_retired: {
    status: 503,
    body: { code: "WORKER_RETIRED", message: "Worker is restarting, please retry" },
    shouldLog: true,
  },
  client_closed: { status: 499, body: null, shouldLog: false },
  payload_too_large: {
    status: 413,
    body: { code: "PAYLOAD_TOO_LARGE", message: "Request body is larger than the runtime accepts" },
    shouldLog: false,
  },
  internal: {
    status: 500,
    body: {
      code: "Internal Server Error",
      message: "Request failed due to an internal server error",
    },
    shouldLog: true,
  },
};

/** Which failure an error thrown by `create()` or `fetch()` is. */
export function classifyFailure(error: unknown): DefaultMainFailure {
  if (error instanceof InvalidWorkerCreation) return "boot_error";
  if (error instanceof InvalidWorkerResponse) return "worker_error";
  if (error instanceof WorkerRequestCancelled) return "worker_limit";
  if (error instanceof WorkerRequestIdleTimeout) return "worker_timeout";
  if (error instanceof WorkerAlreadyRetired) return "worker_retired";
  if (error instanceof DOMException && error.name === "AbortError") return "client_closed";
  if (error instanceof PayloadTooLargeError) return "payload_too_large";
  return "internal";
}

/** The 401 of a failed JWT check, with its Supabase CLI message (`{"msg": ...}`). */
export function unauthorizedResponse(msg: string): Response {
  return Response.json({ msg }, { status: 401 });
}

/** Builds the response for a failure. */
export function failureResponse(failure: DefaultMainFailure): Response {
  const { status, body } = FAILURE_ANSWERS[failure];
  if (body === null) return new Response(null, { status });
  if (typeof body === "string") {
    return new Response(body, { status, headers: { "content-type": "text/plain;charset=UTF-8" } });
  }
  return Response.json(body, { status });
}
