/**
 * Pure: what a user worker may do, as `deno run` arguments and an environment. Nothing here
 * touches the file system; the caller gathers the paths.
 */

/** Supabase's `permissions` option (snake_case), the parts this runtime honours. */
export interface WorkerPermissions {
  /** Hosts the worker may reach; `[]` or absent means every host. */
  allow_net?: string[] | null;
  /** Hosts the worker may not reach. */
  deny_net?: string[] | null;
}

/** Everything that decides a worker's command line. */
export interface WorkerLaunchInput {
  /** Absolute path of `workers/bootstrap.ts`. */
  bootstrapPath: string;
  /** The worker's Unix socket path. */
  socketPath: string;
  /** The worker's private temp dir: the only place it may write (`TMPDIR`). */
  tempDir: string;
  /** Files and directories the worker may read (function dir, static files, module cache...). */
  readPaths: readonly string[];
  /** Environment the function sees, as Supabase's `envVars`. */
  envVars: readonly (readonly [string, string])[];
  /** Value of `SB_EXECUTION_ID`. */
  executionId: string;
  /** V8 old-space limit. */
  memoryLimitMb: number;
  /** `--location` origin that keys the worker's localStorage and Cache API. */
  location: string;
  /** The module cache directory. */
  denoDir: string;
  /** The function's own deno.json / deno.jsonc, if it has one. */
  configPath?: string;
  /** Import map path or `data:` URL (`context.importMapPath`). */
  importMapPath?: string;
  noModuleCache?: boolean;
  noNpm?: boolean;
  /** False makes the worker use only already-cached remote modules. @default true */
  allowRemoteModules?: boolean;
  permissions?: WorkerPermissions;
  /** Inspector address (`HOST:PORT`) to open in this worker. */
  inspect?: string;
  /**
   * Hosts denied when `permissions.allow_net` does not list hosts of its own: loopback,
   * link-local and metadata addresses, and the host's own addresses.
   */
  defaultDenyNet?: readonly string[];
}

/**
 * Addresses no function reaches unless its `allow_net` says otherwise: loopback (the main runtime,
 * other workers, local services), "any" addresses (which also stops `Deno.listen`), link-local
 * and cloud metadata endpoints. Deno 2.9's `--deny-net` takes IPv4 CIDRs and exact IPv6 addresses.
 */
export const ALWAYS_DENIED_NET = [
  "localhost",
  "127.0.0.0/8",
  "0.0.0.0",
  "[::1]",
  "[::]",
  "169.254.0.0/16",
  "[fd00:ec2::254]",
] as const;

/** Formats a host address for `--deny-net` (IPv6 in brackets, without a zone). */
export function denyNetEntry(address: string): string {
  if (!address.includes(":")) return address;
  return `[${address.replace(/%.*$/, "")}]`;
}

/** The command line and environment of one worker process. */
export interface WorkerLaunchPlan {
  args: string[];
  env: Record<string, string>;
  /** Environment names the function may see (the bootstrap deletes the rest). */
  visibleEnvNames: string[];
}

/** Variables the runtime sets for Deno itself; the function never sees them. */
const PLUMBING_ENV = { DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" } as const;

function netFlags(input: WorkerLaunchInput): string[] {
  const { socketPath, permissions } = input;
  const flags: string[] = [];
  const allow = permissions?.allow_net;
  const listsHosts = allow !== undefined && allow !== null && allow.length > 0;
  if (!listsHosts) flags.push("--allow-net");
  else flags.push(`--allow-net=${[...allow, `unix:${socketPath}`].join(",")}`);
  // Deno's deny wins over allow, so hosts listed in allow_net lift the default denials.
  const deny = [
    ...(listsHosts ? [] : input.defaultDenyNet ?? []),
    ...(permissions?.deny_net ?? []),
  ];
  if (deny.length > 0) flags.push(`--deny-net=${[...new Set(deny)].join(",")}`);
  return flags;
}

/**
 * Builds the `deno run` arguments and environment for a worker.
 *
 * The environment is exactly `envVars` plus `SB_EXECUTION_ID` and `TMPDIR` (the worker's private
 * temp dir), plus Deno's own plumbing
 * (`DENO_DIR`, ...) and whatever Deno adds to its own environment at startup: the bootstrap deletes
 * every name but the function's before the function loads. `--allow-env` is left
 * unscoped on purpose: the process has no other variables, and a scoped flag would make
 * `Deno.env.get("UNSET")` throw where Supabase returns `undefined`.
 */
export function planWorkerLaunch(input: WorkerLaunchInput): WorkerLaunchPlan {
  const args = ["run", "--no-prompt", "--no-lock"];
  args.push(input.configPath ? `--config=${input.configPath}` : "--no-config");
  if (input.importMapPath) args.push(`--import-map=${input.importMapPath}`);
  if (input.noModuleCache) args.push("--reload");
  if (input.noNpm) args.push("--no-npm");
  if (input.allowRemoteModules === false) args.push("--cached-only");
  if (input.inspect) args.push(`--inspect=${input.inspect}`);
  args.push(
    "--allow-env",
    "--allow-import",
    `--allow-read=${[...new Set([...input.readPaths, input.socketPath, input.tempDir])].join(",")}`,
    `--allow-write=${input.socketPath},${input.tempDir}`,
    ...netFlags(input),
    `--v8-flags=--max-old-space-size=${input.memoryLimitMb}`,
    `--location=${input.location}`,
    input.bootstrapPath,
  );
  const env: Record<string, string> = {};
  for (const [name, value] of input.envVars) env[name] = value;
  env.SB_EXECUTION_ID = input.executionId;
  // Deno.makeTempDir/File and node's os.tmpdir() read TMPDIR: the worker's private temp dir.
  env.TMPDIR = input.tempDir;
  const visibleEnvNames = Object.keys(env);
  const plumbing: Record<string, string> = { ...PLUMBING_ENV, DENO_DIR: input.denoDir };
  for (const [name, value] of Object.entries(plumbing)) env[name] ??= value;
  return { args, env, visibleEnvNames };
}
