/**
 * Unit tests for `runtime/errors.ts`: the Supabase-compatible classes (names and messages byte for
 * byte), their installation on `Deno.errors`, and the one translation from internal codes.
 */

import assert from "node:assert/strict";
import {
  ConfigError,
  installWorkerErrorClasses,
  InvalidWorkerCreation,
  InvalidWorkerResponse,
  RuntimeError,
  type RuntimeErrorCode,
  toWorkerApiError,
  WORKER_ERROR_CLASSES,
  WorkerAlreadyRetired,
  WorkerRequestCancelled,
  WorkerRequestIdleTimeout,
} from "../../runtime/errors.ts";

Deno.test("Supabase error classes have their name and default message", async (t) => {
  const cases = [
    {
      error: new WorkerRequestCancelled(),
      name: "WorkerRequestCancelled",
      message: "request has been cancelled by supervisor",
    },
    {
      error: new WorkerAlreadyRetired(),
      name: "WorkerAlreadyRetired",
      message: "request cannot be handled because the worker has already retired",
    },
    {
      error: new WorkerRequestIdleTimeout(),
      name: "WorkerRequestIdleTimeout",
      message: "request timed out",
    },
    {
      error: new InvalidWorkerCreation("worker boot error: x"),
      name: "InvalidWorkerCreation",
      message: "worker boot error: x",
    },
    {
      error: new InvalidWorkerResponse("broken pipe"),
      name: "InvalidWorkerResponse",
      message: "broken pipe",
    },
  ];
  for (const { error, name, message } of cases) {
    await t.step(name, () => {
      assert.ok(error instanceof Error);
      assert.equal(error.name, name);
      assert.equal(error.message, message);
      assert.equal(String(error), `${name}: ${message}`);
      assert.ok(error.stack?.startsWith(`${name}: ${message}`));
    });
  }
});

Deno.test("Supabase error classes take a custom message and a cause", () => {
  const cause = new Error("root");
  const error = new WorkerRequestCancelled("custom", { cause });
  assert.equal(error.message, "custom");
  assert.equal(error.cause, cause);
  assert.equal(new WorkerAlreadyRetired(undefined, { cause }).cause, cause);
});

Deno.test("WORKER_ERROR_CLASSES lists the five classes by their names", () => {
  assert.deepEqual(Object.keys(WORKER_ERROR_CLASSES).sort(), [
    "InvalidWorkerCreation",
    "InvalidWorkerResponse",
    "WorkerAlreadyRetired",
    "WorkerRequestCancelled",
    "WorkerRequestIdleTimeout",
  ]);
  for (const [name, cls] of Object.entries(WORKER_ERROR_CLASSES)) {
    assert.equal(cls.name, name);
    assert.equal(new cls("m").name, name);
  }
});

Deno.test("installWorkerErrorClasses() puts the classes on Deno.errors", () => {
  const errors = Deno.errors as unknown as Record<string, unknown>;
  const saved = new Map(
    Object.keys(WORKER_ERROR_CLASSES).map((name) => [
      name,
      Object.getOwnPropertyDescriptor(Deno.errors, name),
    ]),
  );
  try {
    installWorkerErrorClasses();
    installWorkerErrorClasses(); // idempotent
    for (const [name, cls] of Object.entries(WORKER_ERROR_CLASSES)) {
      assert.equal(errors[name], cls);
    }
    const thrown = new WorkerRequestIdleTimeout();
    const ctor = errors.WorkerRequestIdleTimeout as typeof WorkerRequestIdleTimeout;
    assert.ok(thrown instanceof ctor);
    // Deno's own classes are untouched.
    assert.equal(typeof Deno.errors.NotFound, "function");
  } finally {
    for (const [name, descriptor] of saved) {
      if (descriptor) Object.defineProperty(Deno.errors, name, descriptor);
      else delete errors[name];
    }
  }
});

Deno.test("RuntimeError keeps its code, message and cause", () => {
  const cause = new Error("econnreset");
  const error = new RuntimeError("WORKER_CRASHED", "connection lost", { cause });
  assert.equal(error.name, "RuntimeError");
  assert.equal(error.code, "WORKER_CRASHED");
  assert.equal(error.message, "connection lost");
  assert.equal(error.cause, cause);
});

Deno.test("ConfigError has its name", () => {
  const error = new ConfigError('Invalid value "x" for --port');
  assert.equal(String(error), 'ConfigError: Invalid value "x" for --port');
});

Deno.test("toWorkerApiError() maps every RuntimeErrorCode", async (t) => {
  const cases: { code: RuntimeErrorCode; cls: new (...args: never[]) => Error; message: string }[] =
    [
      { code: "BOOT_FAILED", cls: InvalidWorkerCreation, message: "worker boot error: inner" },
      {
        code: "BOOT_TIMEOUT",
        cls: InvalidWorkerCreation,
        message: "worker did not respond in time",
      },
      {
        code: "POOL_TIMEOUT",
        cls: InvalidWorkerCreation,
        message: "worker did not respond in time",
      },
      { code: "EVALUATION_FAILED", cls: InvalidWorkerResponse, message: "inner" },
      { code: "WORKER_CRASHED", cls: InvalidWorkerResponse, message: "inner" },
      { code: "BAD_RESPONSE", cls: InvalidWorkerResponse, message: "inner" },
      {
        code: "WORKER_KILLED",
        cls: WorkerRequestCancelled,
        message: "request has been cancelled by supervisor",
      },
      {
        code: "WORKER_RETIRED",
        cls: WorkerAlreadyRetired,
        message: "request cannot be handled because the worker has already retired",
      },
      { code: "IDLE_TIMEOUT", cls: WorkerRequestIdleTimeout, message: "request timed out" },
    ];
  for (const { code, cls, message } of cases) {
    await t.step(code, () => {
      const internal = new RuntimeError(code, "inner");
      const mapped = toWorkerApiError(internal);
      assert.ok(mapped instanceof cls, `${code} should map to ${cls.name}`);
      assert.equal(mapped.name, cls.name);
      assert.equal(mapped.message, message);
      // Without a cause of its own, the internal error itself becomes the cause.
      assert.equal(mapped.cause, internal);
    });
  }
});

Deno.test("toWorkerApiError() keeps the underlying cause of a RuntimeError", () => {
  const root = new Error("exit code 1");
  const mapped = toWorkerApiError(new RuntimeError("BOOT_FAILED", "boom", { cause: root }));
  assert.ok(mapped instanceof InvalidWorkerCreation);
  assert.equal(mapped.message, "worker boot error: boom");
  assert.equal(mapped.cause, root);
});

Deno.test("toWorkerApiError() passes other errors through", () => {
  const typeError = new TypeError("bad option");
  assert.equal(toWorkerApiError(typeError), typeError);
  const already = new WorkerAlreadyRetired();
  assert.equal(toWorkerApiError(already), already);
  const abort = new DOMException("The signal has been aborted", "AbortError");
  assert.equal(toWorkerApiError(abort), abort);
});

Deno.test("toWorkerApiError() wraps a non-Error value in InvalidWorkerResponse", () => {
  const mapped = toWorkerApiError("string thrown");
  assert.ok(mapped instanceof InvalidWorkerResponse);
  assert.equal(mapped.message, "string thrown");
});
