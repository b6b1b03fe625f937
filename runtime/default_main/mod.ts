/**
 * The built-in main service, used when no `--main-service` is given: serves a functions folder the
 * way `supabase functions serve` does. The only module that imports hono.
 */

import { Hono } from "hono";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import type { WorkerLimitValues } from "../config.ts";
import { findEntrypoint, isDirectorySync } from "../entrypoint.ts";
import { WorkerAlreadyRetired } from "../errors.ts";
import { formatError, type Logger } from "../log.ts";
import type { EdgeRuntimeMainApi } from "../main_service.ts";
import type { ServeHandler } from "../serve_capture.ts";
import {
  classifyFailure,
  FAILURE_ANSWERS,
  failureResponse,
  unauthorizedResponse,
} from "./error_table.ts";
import type { FunctionSettings, FunctionSettingsTable } from "./function_config.ts";
import type { JwtVerifier } from "./jwt.ts";

export { loadFunctionSettings } from "./function_config.ts";
export { createJwtVerifier } from "./jwt.ts";

/** A function name as it may appear in a URL (checked before any decoding). */
export const FUNCTION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** A "." or ".." path segment, plain or percent-encoded. */
const DOT_SEGMENT = /\/(?:\.|%2e){1,2}(?:[/?#]|$)/i;

/** The gateway prefix Supabase strips before a function sees its path. */
const GATEWAY_PREFIX = "/functions/v1";

/** What the default main service needs. */
export interface DefaultMainOptions {
  /** Absolute path of the functions folder. */
  functionsPath: string;
  /** The environment every function gets. */
  functionEnv: readonly (readonly [string, string])[];
  api: EdgeRuntimeMainApi;
  logger: Logger;
  /** Per-function settings (config.toml, config.json). */
  settings: FunctionSettingsTable;
  /** JWT checks, when keys are configured and checks are on. */
  verifyJwt: JwtVerifier | undefined;
  /** Memory, CPU and wall-clock limits of every worker. */
  limits: Readonly<WorkerLimitValues>;
}

/** Where a request goes: the function name and the URL the function sees. */
export interface FunctionRoute {
  name: string;
  /** The request URL with the gateway prefix removed (the same URL when there was none). */
  url: string;
}

/**
 * Finds the function a request is for. `/<name>/...` and `/functions/v1/<name>/...` both reach
 * `<name>`, which sees `/<name>/...`.
 *
 * @returns the route, or `undefined` when the path names no valid function
 */
export function routeFunction(requestUrl: string): FunctionRoute | undefined {
  // Deno.serve hands over the request target as sent. Only a path with dot segments ("/./",
  // "/../" or their %2e forms) needs the URL parser to resolve them; every other path is read by
  // string slicing, which saves a URL parse on every request.
  if (DOT_SEGMENT.test(requestUrl)) requestUrl = new URL(requestUrl).href;
  const pathStart = requestUrl.indexOf("/", requestUrl.indexOf("//") + 2);
  if (pathStart === -1) return undefined;
  const origin = requestUrl.slice(0, pathStart);
  let rest = requestUrl.slice(pathStart);
  let stripped = false;
  if (
    rest.startsWith(GATEWAY_PREFIX) &&
    (rest.length === GATEWAY_PREFIX.length || "/?#".includes(rest[GATEWAY_PREFIX.length]))
  ) {
    rest = rest.slice(GATEWAY_PREFIX.length);
    if (!rest.startsWith("/")) rest = `/${rest}`;
    stripped = true;
  }
  let nameEnd = 1;
  while (nameEnd < rest.length && !"/?#".includes(rest[nameEnd])) nameEnd++;
  const name = rest.slice(1, nameEnd);
  if (!name || name.length > 128 || !FUNCTION_NAME_PATTERN.test(name)) return undefined;
  if (!stripped) return { name, url: requestUrl };
  return { name, url: origin + rest };
}

/** The `create()` options a function's settings add. */
function settingsOptions(settings: FunctionSettings | undefined): Record<string, unknown> {
  if (!settings) return {};
  return {
    ...(settings.entrypoint ? { maybeEntrypoint: pathToFileURL(settings.entrypoint).href } : {}),
    ...(settings.importMap ? { context: { importMapPath: settings.importMap } } : {}),
    staticPatterns: settings.staticFiles,
    ...(settings.allowNet ? { permissions: { allow_net: settings.allowNet } } : {}),
    ...settings.limits,
  };
}

/**
 * Builds the default main service's handler.
 */
export function createDefaultMainService(options: DefaultMainOptions): ServeHandler {
  const { api, logger, functionsPath, settings, verifyJwt, limits } = options;
  const envVars = options.functionEnv.map(([n, v]) => [n, v] as [string, string]);
  const app = new Hono();

  app.get("/_internal/health", (c) => c.json({ message: "ok" }));
  app.get("/_internal/metric", async (c) => c.json(await api.getRuntimeMetrics()));
  app.get(
    "/_internal/metrics",
    (c) =>
      c.text(api.getPrometheusMetrics(), 200, {
        "content-type": "text/plain; version=0.0.4; charset=utf-8",
      }),
  );

  // The function's folder (its own files and `_shared` stay readable even when its entrypoint is
  // in a subfolder); the entrypoint's folder only for a function that has no folder of its own.
  const servicePathOf = (name: string) => {
    const folder = join(functionsPath, name);
    const entrypoint = settings.get(name)?.entrypoint;
    if (!entrypoint || isDirectorySync(folder)) return folder;
    return dirname(entrypoint);
  };
  const exists = async (name: string) =>
    settings.get(name)?.entrypoint !== undefined ||
    (await findEntrypoint(join(functionsPath, name))) !== undefined;

  // One options object per function name, built once: this runs on every request.
  const optionsByName = new Map<string, Record<string, unknown>>();
  const createOptionsFor = (name: string) => {
    let options = optionsByName.get(name);
    if (!options) {
      if (optionsByName.size >= 1024) optionsByName.clear();
      options = Object.freeze({
        ...limits,
        ...settingsOptions(settings.get(name)),
        servicePath: servicePathOf(name),
        envVars,
        noModuleCache: false,
        forceCreate: false,
      });
      optionsByName.set(name, options);
    }
    return options;
  };

  const callFunction = async (name: string, request: Request): Promise<Response> => {
    const createOptions = createOptionsFor(name);
    // A worker that retires between create() and fetch() is retried once with a fresh one.
    try {
      return await (await api.userWorkers.create(createOptions)).fetch(request);
    } catch (error) {
      if (!(error instanceof WorkerAlreadyRetired)) throw error;
      return await (await api.userWorkers.create(createOptions)).fetch(request);
    }
  };

  const serveFunction = async (request: Request, route: FunctionRoute): Promise<Response> => {
    if (
      verifyJwt && request.method !== "OPTIONS" && settings.get(route.name)?.verifyJwt !== false
    ) {
      const verdict = await verifyJwt(request.headers.get("authorization"));
      // As the CLI: an unknown function is a 404 whatever the token says.
      if (!verdict.ok) {
        return await exists(route.name)
          ? unauthorizedResponse(verdict.msg)
          : failureResponse("function_not_found");
      }
    }
    let forwarded = request;
    if (route.url !== request.url) {
      forwarded = new Request(route.url, request);
      api.applySupabaseTag(request, forwarded);
    }
    try {
      return await callFunction(route.name, forwarded);
    } catch (error) {
      let failure = classifyFailure(error);
      if (failure === "boot_error" && !(await exists(route.name))) failure = "function_not_found";
      if (FAILURE_ANSWERS[failure].shouldLog) {
        logger.error(`function "${route.name}": ${formatError(error)}`);
      }
      return failureResponse(failure);
    }
  };

  app.all("*", () => failureResponse("function_not_found"));

  app.onError((error) => {
    logger.error(`default main service: ${formatError(error)}`);
    return failureResponse("internal");
  });

  // Function requests, the hot path, go straight to the worker: building hono's context for them
  // cost about a fifth of the main process's time per relayed request. Everything else (the
  // /_internal routes, 404s) goes through the app.
  return (request, info) => {
    const route = routeFunction(request.url);
    // "_internal" never matches FUNCTION_NAME_PATTERN, so those routes always reach the app.
    if (route) return serveFunction(request, route);
    return app.fetch(request, { info });
  };
}
