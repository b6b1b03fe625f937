/**
 * `main.ts smoke`: boots functions with production limits and sandbox, sends the requests each
 * function lists in its `smoke.json` (or a plain `GET /<name>` expecting no 5xx), and reports one
 * line per case, a summary, and optionally JUnit XML for CI.
 */

import { join } from "node:path";
import type { ResolvedConfig } from "./config.ts";
import { ConfigError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { startRuntime } from "./runtime.ts";

/** One request and what its answer must look like. */
export interface SmokeCase {
  /** Shown in reports. @default "<METHOD> <path>" */
  name?: string;
  /** @default "GET" */
  method?: string;
  /** Request path. @default "/<function name>" */
  path?: string;
  headers?: Record<string, string>;
  /** A string is sent as is; anything else as JSON. */
  body?: unknown;
  /** Expected status. @default any status below 500 */
  status?: number;
  /** A substring the body must contain. */
  bodyIncludes?: string;
  /** A JSON subset the body must match (objects by key, arrays and values exactly). */
  json?: unknown;
}

/** The outcome of one case. */
export interface SmokeResult {
  functionName: string;
  caseName: string;
  passed: boolean;
  /** Why it failed. */
  failure?: string;
  durationMs: number;
}

/** Reads `<functionsPath>/<name>/smoke.json`; the default case when the file is absent. */
async function loadSmokeCases(functionsPath: string, name: string): Promise<SmokeCase[]> {
  const path = join(functionsPath, name, "smoke.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [{}];
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`Cannot parse "${path}": ${(error as Error).message}`);
  }
  const cases = Array.isArray(parsed) ? parsed : [parsed];
  for (const [index, value] of cases.entries()) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ConfigError(`Invalid case ${index + 1} in "${path}": expected an object`);
    }
  }
  return cases as SmokeCase[];
}

/** Lists the servable functions of a folder (names as URLs allow; `_shared` and such skipped). */
export async function listFunctions(functionsPath: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(functionsPath)) {
    if (entry.isDirectory && /^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(entry.name)) names.push(entry.name);
  }
  return names.sort();
}

/** True when `actual` contains everything in `expected` (objects by key, the rest exactly). */
export function matchesSubset(actual: unknown, expected: unknown): boolean {
  if (typeof expected !== "object" || expected === null) return Object.is(actual, expected);
  if (Array.isArray(expected)) {
    return Array.isArray(actual) && actual.length === expected.length &&
      expected.every((item, i) => matchesSubset(actual[i], item));
  }
  if (typeof actual !== "object" || actual === null || Array.isArray(actual)) return false;
  const record = actual as Record<string, unknown>;
  return Object.entries(expected).every(([key, value]) => matchesSubset(record[key], value));
}

/** Checks one answer against a case; returns why it fails, or `undefined`. */
export function judge(smoke: SmokeCase, status: number, body: string): string | undefined {
  if (smoke.status !== undefined ? status !== smoke.status : status >= 500) {
    const wanted = smoke.status !== undefined ? `status ${smoke.status}` : "a status below 500";
    return `expected ${wanted}, got ${status}: ${body.slice(0, 200)}`;
  }
  if (smoke.bodyIncludes !== undefined && !body.includes(smoke.bodyIncludes)) {
    return `body does not contain ${JSON.stringify(smoke.bodyIncludes)}: ${body.slice(0, 200)}`;
  }
  if (smoke.json !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body);
    } catch {
      return `body is not JSON: ${body.slice(0, 200)}`;
    }
    if (!matchesSubset(parsed, smoke.json)) {
      return `JSON ${JSON.stringify(parsed).slice(0, 200)} does not match ${
        JSON.stringify(smoke.json)
      }`;
    }
  }
  return undefined;
}

/** Options of {@linkcode runSmokeCase}. */
interface RunSmokeCaseOptions {
  baseUrl: string;
  functionName: string;
  smoke: SmokeCase;
  timeoutMs: number;
}

/** Sends one case's request and judges the answer. */
async function runSmokeCase(options: RunSmokeCaseOptions): Promise<SmokeResult> {
  const { smoke, functionName } = options;
  const method = (smoke.method ?? "GET").toUpperCase();
  const path = smoke.path ?? `/${functionName}`;
  const caseName = smoke.name ?? `${method} ${path}`;
  const headers = new Headers(smoke.headers);
  let body: string | undefined;
  if (smoke.body !== undefined) {
    body = typeof smoke.body === "string" ? smoke.body : JSON.stringify(smoke.body);
    if (typeof smoke.body !== "string" && !headers.has("content-type")) {
      headers.set("content-type", "application/json");
    }
  }
  const startedAt = performance.now();
  let failure: string | undefined;
  try {
    const response = await fetch(new URL(path, options.baseUrl), {
      method,
      headers,
      body,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    failure = judge(smoke, response.status, await response.text());
  } catch (error) {
    failure = error instanceof DOMException && error.name === "TimeoutError"
      ? `no answer within ${options.timeoutMs} ms`
      : `request failed: ${(error as Error).message}`;
  }
  return {
    functionName,
    caseName,
    passed: failure === undefined,
    failure,
    durationMs: performance.now() - startedAt,
  };
}

function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Renders results as JUnit XML: one test suite per function. */
export function junitXml(results: readonly SmokeResult[]): string {
  const byFunction = Map.groupBy(results, (r) => r.functionName);
  const failures = results.filter((r) => !r.passed).length;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="edge-runtime smoke" tests="${results.length}" failures="${failures}">`,
  ];
  for (const [name, cases] of byFunction) {
    const failed = cases.filter((c) => !c.passed).length;
    const seconds = cases.reduce((sum, c) => sum + c.durationMs, 0) / 1000;
    lines.push(
      `  <testsuite name="${xmlEscape(name)}" tests="${cases.length}" failures="${failed}" ` +
        `time="${seconds.toFixed(3)}">`,
    );
    for (const c of cases) {
      const open = `    <testcase classname="${xmlEscape(name)}" name="${xmlEscape(c.caseName)}" ` +
        `time="${(c.durationMs / 1000).toFixed(3)}"`;
      if (c.passed) {
        lines.push(`${open}/>`);
      } else {
        lines.push(
          `${open}>`,
          `      <failure message="${xmlEscape(c.failure ?? "failed")}"/>`,
          "    </testcase>",
        );
      }
    }
    lines.push("  </testsuite>");
  }
  lines.push("</testsuites>", "");
  return lines.join("\n");
}

/** Options of {@linkcode runSmoke}. */
export interface RunSmokeOptions {
  config: ResolvedConfig;
  logger: Logger;
  /** Functions to check; all of the functions folder when empty. */
  names: readonly string[];
  /** How long each request may take. */
  timeoutMs: number;
  /** Where report lines go. */
  print: (line: string) => void;
}

/**
 * Starts a runtime on a free loopback port with the built-in main service, runs every case, and
 * stops it again.
 *
 * @returns every case's result
 * @throws {ConfigError} when a named function does not exist or a smoke.json is malformed
 */
export async function runSmoke(options: RunSmokeOptions): Promise<SmokeResult[]> {
  const { config, print } = options;
  const names = options.names.length > 0
    ? [...options.names]
    : await listFunctions(config.functionsPath);
  const casesByName = new Map<string, SmokeCase[]>();
  for (const name of names) {
    if (!(await Deno.stat(join(config.functionsPath, name)).catch(() => undefined))?.isDirectory) {
      throw new ConfigError(`Function "${name}" not found in "${config.functionsPath}"`);
    }
    casesByName.set(name, await loadSmokeCases(config.functionsPath, name));
  }
  const runtime = await startRuntime({ config, logger: options.logger });
  const baseUrl = `http://${runtime.addr.hostname}:${runtime.addr.port}`;
  const results: SmokeResult[] = [];
  try {
    for (const [name, cases] of casesByName) {
      for (const smoke of cases) {
        const result = await runSmokeCase({
          baseUrl,
          functionName: name,
          smoke,
          timeoutMs: options.timeoutMs,
        });
        results.push(result);
        const ms = `${result.durationMs.toFixed(0)} ms`;
        print(
          result.passed
            ? `ok   ${name} › ${result.caseName} (${ms})`
            : `FAIL ${name} › ${result.caseName} (${ms}): ${result.failure}`,
        );
      }
    }
  } finally {
    await runtime.shutdown(0);
  }
  const failed = results.filter((r) => !r.passed).length;
  print(`${results.length - failed} passed, ${failed} failed`);
  return results;
}
