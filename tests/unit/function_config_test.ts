/**
 * Unit tests for `runtime/default_main/function_config.ts`: per-function settings read from
 * `supabase/config.toml` `[functions.<name>]` and `supabase/functions/<name>/config.json`, in a
 * temporary Supabase project.
 */

import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import {
  type FunctionSettings,
  loadFunctionSettings,
} from "../../runtime/default_main/function_config.ts";
import { ConfigError } from "../../runtime/errors.ts";

/** A temporary Supabase project: `<root>/supabase/{config.toml,functions/}`. */
interface TempProject {
  root: string;
  supabase: string;
  functions: string;
  /** Writes `text` at `relative` (to the project root), creating folders. */
  write(relative: string, text: string): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

async function tempProject(): Promise<TempProject> {
  const root = await Deno.makeTempDir({ prefix: "fn-config-" });
  const supabase = join(root, "supabase");
  const functions = join(supabase, "functions");
  await Deno.mkdir(functions, { recursive: true });
  return {
    root,
    supabase,
    functions,
    async write(relative, text) {
      const path = join(root, relative);
      await Deno.mkdir(dirname(path), { recursive: true });
      await Deno.writeTextFile(path, text);
    },
    [Symbol.asyncDispose]: () => Deno.remove(root, { recursive: true }),
  };
}

const EMPTY: FunctionSettings = {
  verifyJwt: undefined,
  entrypoint: undefined,
  importMap: undefined,
  staticFiles: [],
  limits: {},
};

/** Asserts that loading rejects with a ConfigError whose message names `file`. */
async function assertConfigError(functionsPath: string, file: string): Promise<void> {
  await assert.rejects(loadFunctionSettings(functionsPath), (error: Error) => {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error.name}`);
    assert.ok(error.message.includes(file), `"${error.message}" does not name ${file}`);
    return true;
  });
}

Deno.test("loadFunctionSettings() reads [functions.<name>] from config.toml alone", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/config.toml",
    [
      'project_id = "test"',
      "[api]",
      "port = 54321",
      "[functions.hello]",
      "verify_jwt = false",
      "[functions.other]",
      "verify_jwt = true",
      "",
    ].join("\n"),
  );
  await project.write("supabase/functions/hello/index.ts", "");
  const table = await loadFunctionSettings(project.functions);
  assert.deepEqual(table.get("hello"), { ...EMPTY, verifyJwt: false });
  // A [functions.<name>] section counts even when its folder does not exist (yet).
  assert.deepEqual(table.get("other"), { ...EMPTY, verifyJwt: true });
  assert.equal(table.size, 2);
});

Deno.test("loadFunctionSettings() reads <functions>/<name>/config.json alone", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/functions/hello/config.json",
    JSON.stringify({
      verify_jwt: false,
      entrypoint: "main.ts",
      import_map: "deno.json",
      static_files: ["assets/*.html", "README.md"],
    }),
  );
  await project.write("supabase/functions/plain/index.ts", "");
  const dir = join(project.functions, "hello");
  const table = await loadFunctionSettings(project.functions);
  assert.deepEqual(table.get("hello"), {
    verifyJwt: false,
    entrypoint: join(dir, "main.ts"),
    importMap: join(dir, "deno.json"),
    staticFiles: [join(dir, "assets/*.html"), join(dir, "README.md")],
    limits: {},
  });
  assert.equal(table.has("plain"), false, "a function without settings is absent");
  assert.equal(table.size, 1);
});

Deno.test("loadFunctionSettings() lets config.json override config.toml key by key", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/config.toml",
    [
      "[functions.hello]",
      "verify_jwt = true",
      'entrypoint = "./functions/hello/from-toml.ts"',
      'import_map = "./functions/hello/toml-map.json"',
      'static_files = ["./functions/hello/toml/*.txt"]',
      "",
    ].join("\n"),
  );
  await project.write(
    "supabase/functions/hello/config.json",
    JSON.stringify({ verify_jwt: false, static_files: ["json/*.txt"] }),
  );
  const fromToml = await loadFunctionSettings(project.functions);
  const settings = fromToml.get("hello");
  assert.ok(settings);
  // From config.json: overridden.
  assert.equal(settings.verifyJwt, false);
  assert.deepEqual(settings.staticFiles, [join(project.functions, "hello", "json/*.txt")]);
  // From config.toml: kept, because config.json does not set them.
  assert.ok(settings.entrypoint?.endsWith(join("functions", "hello", "from-toml.ts")));
  assert.ok(settings.importMap?.endsWith(join("functions", "hello", "toml-map.json")));
});

Deno.test("loadFunctionSettings() resolves config.json paths against the function folder", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/functions/hello/config.json",
    JSON.stringify({
      entrypoint: "./src/main.ts",
      import_map: "../_shared/import_map.json",
      static_files: ["../../assets/*.txt", "data/file.json"],
    }),
  );
  const dir = join(project.functions, "hello");
  const settings = (await loadFunctionSettings(project.functions)).get("hello");
  assert.deepEqual(settings, {
    verifyJwt: undefined,
    entrypoint: join(dir, "src", "main.ts"),
    importMap: join(project.functions, "_shared", "import_map.json"),
    staticFiles: [join(project.supabase, "assets", "*.txt"), join(dir, "data", "file.json")],
    limits: {},
  });
});

// Regression: config.toml paths are relative to config.toml's folder, as the Supabase CLI reads them.
Deno.test({
  name: "loadFunctionSettings() resolves config.toml paths against the folder of config.toml",
  async fn() {
    await using project = await tempProject();
    await project.write(
      "supabase/config.toml",
      [
        "[functions.hello]",
        'entrypoint = "./functions/hello/index.ts"',
        'import_map = "./functions/hello/deno.json"',
        'static_files = ["./functions/hello/*.html"]',
        "",
      ].join("\n"),
    );
    const dir = join(project.functions, "hello");
    assert.deepEqual((await loadFunctionSettings(project.functions)).get("hello"), {
      verifyJwt: undefined,
      entrypoint: join(dir, "index.ts"),
      importMap: join(dir, "deno.json"),
      staticFiles: [join(dir, "*.html")],
      limits: {},
    });
  },
});

Deno.test("loadFunctionSettings() keeps absolute paths from both files", async () => {
  await using project = await tempProject();
  const elsewhere = join(project.root, "elsewhere");
  await project.write(
    "supabase/config.toml",
    [
      "[functions.from-toml]",
      `entrypoint = ${JSON.stringify(join(elsewhere, "toml.ts"))}`,
      `import_map = ${JSON.stringify(join(elsewhere, "toml-map.json"))}`,
      `static_files = [${JSON.stringify(join(elsewhere, "*.toml.txt"))}]`,
      "",
    ].join("\n"),
  );
  await project.write(
    "supabase/functions/from-json/config.json",
    JSON.stringify({
      entrypoint: join(elsewhere, "json.ts"),
      import_map: join(elsewhere, "json-map.json"),
      static_files: [join(elsewhere, "*.json.txt")],
    }),
  );
  const table = await loadFunctionSettings(project.functions);
  assert.deepEqual(table.get("from-toml"), {
    verifyJwt: undefined,
    entrypoint: join(elsewhere, "toml.ts"),
    importMap: join(elsewhere, "toml-map.json"),
    staticFiles: [join(elsewhere, "*.toml.txt")],
    limits: {},
  });
  assert.deepEqual(table.get("from-json"), {
    verifyJwt: undefined,
    entrypoint: join(elsewhere, "json.ts"),
    importMap: join(elsewhere, "json-map.json"),
    staticFiles: [join(elsewhere, "*.json.txt")],
    limits: {},
  });
});

Deno.test("loadFunctionSettings() throws ConfigError naming a malformed file", async (t) => {
  const toml = "supabase/config.toml";
  const json = "supabase/functions/hello/config.json";
  const cases: { name: string; file: string; text: string }[] = [
    { name: "config.toml that is not TOML", file: toml, text: "[functions.hello\nverify_jwt =" },
    {
      name: "config.toml verify_jwt a string",
      file: toml,
      text: '[functions.hello]\nverify_jwt = "no"',
    },
    {
      name: "config.toml entrypoint a number",
      file: toml,
      text: "[functions.hello]\nentrypoint = 1",
    },
    {
      name: "config.toml import_map a table",
      file: toml,
      text: "[functions.hello.import_map]\na = 1",
    },
    {
      name: "config.toml static_files a string",
      file: toml,
      text: '[functions.hello]\nstatic_files = "*.txt"',
    },
    {
      name: "config.toml static_files with a number",
      file: toml,
      text: '[functions.hello]\nstatic_files = ["a.txt", 2]',
    },
    { name: "config.json that is not JSON", file: json, text: "{ verify_jwt: false }" },
    { name: "config.json that is empty", file: json, text: "" },
    { name: "config.json a string", file: json, text: '"verify_jwt"' },
    { name: "config.json null", file: json, text: "null" },
    { name: "config.json verify_jwt a string", file: json, text: '{"verify_jwt": "false"}' },
    { name: "config.json entrypoint null", file: json, text: '{"entrypoint": null}' },
    { name: "config.json import_map a list", file: json, text: '{"import_map": ["a"]}' },
    { name: "config.json static_files an object", file: json, text: '{"static_files": {}}' },
  ];
  for (const { name, file, text } of cases) {
    await t.step(name, async () => {
      await using project = await tempProject();
      await project.write(file, text);
      await assertConfigError(project.functions, join(project.root, file));
    });
  }
});

// Regression: a config.json holding a JSON array used to pass as an empty object.
Deno.test({
  name: "loadFunctionSettings() throws ConfigError for a config.json that is a JSON array",
  async fn() {
    await using project = await tempProject();
    const file = "supabase/functions/hello/config.json";
    await project.write(file, '["verify_jwt", false]');
    await assertConfigError(project.functions, join(project.root, file));
  },
});

// Regression: a [functions] entry that is not a table used to be skipped silently.
Deno.test({
  name: "loadFunctionSettings() throws ConfigError for a [functions] entry that is not a table",
  async fn() {
    await using project = await tempProject();
    const file = "supabase/config.toml";
    await project.write(file, "[functions]\nhello = false\n");
    await assertConfigError(project.functions, join(project.root, file));
  },
});

Deno.test("loadFunctionSettings() ignores config.toml sections other than [functions]", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/config.toml",
    '[api]\nport = 54321\n[edge_runtime]\npolicy = "per_worker"\n[db.seed]\nenabled = true\n',
  );
  assert.equal((await loadFunctionSettings(project.functions)).size, 0);
});

Deno.test("loadFunctionSettings() returns an empty table for a missing functions folder", async () => {
  await using project = await tempProject();
  assert.equal((await loadFunctionSettings(join(project.root, "no-such-folder"))).size, 0);
  assert.equal((await loadFunctionSettings(join(project.root, "a", "b", "functions"))).size, 0);
});

Deno.test("loadFunctionSettings() reads per-function limits, config.json over config.toml", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/config.toml",
    "[functions.hello]\nmemory_limit_mb = 64\ncpu_time_hard_limit_ms = 500\n",
  );
  await project.write(
    "supabase/functions/hello/config.json",
    JSON.stringify({ cpu_time_hard_limit_ms: 300, worker_timeout_ms: 0 }),
  );
  const table = await loadFunctionSettings(project.functions);
  assert.deepEqual(table.get("hello")?.limits, {
    memoryLimitMb: 64,
    cpuTimeHardLimitMs: 300,
    workerTimeoutMs: 0,
  });
});

Deno.test("loadFunctionSettings() refuses a limit that is not a whole number", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/functions/hello/config.json",
    JSON.stringify({ memory_limit_mb: 0 }),
  );
  await assert.rejects(loadFunctionSettings(project.functions), /memory_limit_mb/);
});

Deno.test("loadFunctionSettings() reads allow_net, and refuses one that is not a list of hosts", async () => {
  await using project = await tempProject();
  await project.write(
    "supabase/config.toml",
    '[functions.hello]\nallow_net = ["127.0.0.1:54321", "api.example.com"]\n',
  );
  const table = await loadFunctionSettings(project.functions);
  assert.deepEqual(table.get("hello")?.allowNet, ["127.0.0.1:54321", "api.example.com"]);
  await project.write("supabase/functions/hello/config.json", JSON.stringify({ allow_net: "x" }));
  await assert.rejects(loadFunctionSettings(project.functions), /allow_net/);
});
