/**
 * Module boundaries (STYLE.md "Module boundaries"), checked like std's `lint:circular`: reads the
 * import and export-from statements of every `.ts` file under runtime/, workers/ and main.ts, and
 * fails on an edge the rules do not allow. Comments are ignored, and for the "only X may call Y"
 * rules string contents are too, so prose and error messages that name an API do not count.
 */

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { posix } from "node:path";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** One import or re-export edge. */
interface Edge {
  /** The specifier as written. */
  specifier: string;
  /** Project-relative path for a relative specifier, else the specifier itself. */
  target: string;
  /** `import type`, `export type`, or every named binding marked `type`. */
  typeOnly: boolean;
  kind: "import" | "export" | "dynamic";
}

interface SourceFile {
  /** Project-relative, with forward slashes (`runtime/proxy.ts`). */
  path: string;
  /** The source with comments blanked out (line breaks kept). */
  code: string;
  /** `code` with the contents of strings, templates and regex literals blanked out too. */
  bare: string;
  edges: Edge[];
}

const REGEX_KEYWORDS = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "instanceof",
  "yield",
  "await",
]);

/**
 * Blanks out comments (→ `code`) and also literal contents (→ `bare`), keeping every line break
 * so offsets and line numbers stay the same. A small tokenizer: strings, nested template
 * expressions and regex literals are recognised, so a `//` inside a string is not a comment and a
 * quote inside a regex does not open a string.
 */
function stripSource(source: string): { code: string; bare: string } {
  let code = "";
  let bare = "";
  let i = 0;
  let braceDepth = 0;
  /** The brace depth at which each open `${` of a template literal started. */
  const templateDepths: number[] = [];
  const blank = (ch: string) => (ch === "\n" ? "\n" : " ");
  /** Copies source[from, to) into `code` and blanks it in `bare`. */
  const literal = (from: number, to: number) => {
    for (let k = from; k < to; k++) {
      code += source[k];
      bare += blank(source[k]);
    }
  };
  const copy = (text: string) => {
    code += text;
    bare += text;
  };

  /** Scans a template body from `i` (just after "`" or "}"); stops after "`" or "${". */
  const scanTemplate = () => {
    while (i < source.length) {
      const ch = source[i];
      if (ch === "\\") {
        literal(i, Math.min(i + 2, source.length));
        i += 2;
      } else if (ch === "`") {
        copy("`");
        i++;
        return;
      } else if (ch === "$" && source[i + 1] === "{") {
        copy("${");
        i += 2;
        templateDepths.push(braceDepth);
        braceDepth++;
        return;
      } else {
        literal(i, i + 1);
        i++;
      }
    }
  };

  const isRegexStart = () => {
    const before = code.trimEnd();
    if (before === "") return true;
    const last = before[before.length - 1];
    if (/[\w$]/.test(last)) return REGEX_KEYWORDS.has(/[\w$]+$/.exec(before)![0]);
    return last !== ")" && last !== "]" && last !== '"' && last !== "'" && last !== "`";
  };

  while (i < source.length) {
    const ch = source[i];
    const next = source[i + 1];
    if (ch === "/" && next === "/") {
      while (i < source.length && source[i] !== "\n") {
        code += " ";
        bare += " ";
        i++;
      }
    } else if (ch === "/" && next === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end === -1 ? source.length : end + 2;
      for (; i < stop; i++) {
        code += blank(source[i]);
        bare += blank(source[i]);
      }
    } else if (ch === '"' || ch === "'") {
      copy(ch);
      i++;
      const start = i;
      while (i < source.length && source[i] !== ch && source[i] !== "\n") {
        i += source[i] === "\\" ? 2 : 1;
      }
      literal(start, Math.min(i, source.length));
      if (i < source.length) {
        copy(source[i]);
        i++;
      }
    } else if (ch === "`") {
      copy("`");
      i++;
      scanTemplate();
    } else if (ch === "/" && isRegexStart()) {
      copy("/");
      i++;
      const start = i;
      let inClass = false;
      while (i < source.length && source[i] !== "\n") {
        const c = source[i];
        if (c === "\\") {
          i += 2;
          continue;
        }
        if (c === "[") inClass = true;
        else if (c === "]") inClass = false;
        else if (c === "/" && !inClass) break;
        i++;
      }
      literal(start, Math.min(i, source.length));
      if (i < source.length && source[i] === "/") {
        copy("/");
        i++;
      }
    } else if (ch === "{") {
      braceDepth++;
      copy(ch);
      i++;
    } else if (ch === "}") {
      braceDepth--;
      copy(ch);
      i++;
      if (templateDepths.length > 0 && templateDepths[templateDepths.length - 1] === braceDepth) {
        templateDepths.pop();
        scanTemplate();
      }
    } else {
      copy(ch);
      i++;
    }
  }
  return { code, bare };
}

const STATIC_EDGE = /^(import|export)\s+(type\s+)?([\s\S]*?)\bfrom\s*(["'])([^"']+)\4\s*$/;
const SIDE_EFFECT_IMPORT = /^import\s*(["'])([^"']+)\1\s*$/;
const DYNAMIC_IMPORT = /\bimport\s*\(\s*(["'`])([^"'`$]+)\1\s*\)/g;

function resolveTarget(fromPath: string, specifier: string): string {
  if (!specifier.startsWith(".")) return specifier;
  return posix.normalize(posix.join(posix.dirname(fromPath), specifier));
}

function isTypeOnlyClause(clause: string): boolean {
  const named = /^\{([\s\S]*)\}$/.exec(clause.trim());
  if (!named) return false;
  const names = named[1].split(",").map((s) => s.trim()).filter((s) => s !== "");
  return names.length > 0 && names.every((name) => name.startsWith("type "));
}

/** Reads the import and export-from edges of comment-stripped code. */
function readEdges(path: string, code: string): Edge[] {
  const edges: Edge[] = [];
  for (const match of code.matchAll(/^[ \t]*(?:import|export)\b/gm)) {
    const start = match.index! + match[0].length - match[0].trimStart().length;
    const end = code.indexOf(";", start);
    const statement = code.slice(start, end === -1 ? code.length : end).trim();
    const found = STATIC_EDGE.exec(statement);
    if (found) {
      edges.push({
        specifier: found[5],
        target: resolveTarget(path, found[5]),
        typeOnly: found[2] !== undefined || isTypeOnlyClause(found[3]),
        kind: found[1] as "import" | "export",
      });
      continue;
    }
    const sideEffect = SIDE_EFFECT_IMPORT.exec(statement);
    if (sideEffect) {
      edges.push({
        specifier: sideEffect[2],
        target: resolveTarget(path, sideEffect[2]),
        typeOnly: false,
        kind: "import",
      });
    }
  }
  for (const match of code.matchAll(DYNAMIC_IMPORT)) {
    edges.push({
      specifier: match[2],
      target: resolveTarget(path, match[2]),
      typeOnly: false,
      kind: "dynamic",
    });
  }
  return edges;
}

async function listTs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(`${ROOT}${dir}`)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await listTs(path));
    else if (entry.isFile && entry.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

let sourcesCache: Promise<SourceFile[]> | undefined;

/** Every checked source file, read once per test run. */
function sources(): Promise<SourceFile[]> {
  sourcesCache ??= (async () => {
    const paths = ["main.ts", ...await listTs("runtime"), ...await listTs("workers")];
    return await Promise.all(paths.map(async (path) => {
      const { code, bare } = stripSource(await Deno.readTextFile(`${ROOT}${path}`));
      return { path, code, bare, edges: readEdges(path, code) };
    }));
  })();
  return sourcesCache;
}

function isNodeBuiltin(target: string): boolean {
  return target.startsWith("node:");
}

function isProjectPath(target: string): boolean {
  return target.endsWith(".ts") && !target.includes(":") && !target.startsWith("/");
}

function isThirdParty(target: string): boolean {
  return !isNodeBuiltin(target) && !isProjectPath(target);
}

/** Lists every edge of the files matching `from` that `allowed` refuses. */
async function forbiddenEdges(
  from: (path: string) => boolean,
  allowed: (edge: Edge, file: SourceFile) => boolean,
): Promise<string[]> {
  const out: string[] = [];
  for (const file of await sources()) {
    if (!from(file.path)) continue;
    for (const edge of file.edges) {
      if (!allowed(edge, file)) out.push(`${file.path} → ${edge.specifier}`);
    }
  }
  return out;
}

/** Files whose string-free code matches `pattern`, with the line of each match. */
async function filesUsing(pattern: RegExp): Promise<string[]> {
  const out: string[] = [];
  for (const file of await sources()) {
    for (const match of file.bare.matchAll(new RegExp(pattern.source, "g"))) {
      const line = file.bare.slice(0, match.index).split("\n").length;
      out.push(`${file.path}:${line}`);
    }
  }
  return out;
}

function pathsOf(locations: string[]): string[] {
  return [...new Set(locations.map((l) => l.slice(0, l.lastIndexOf(":"))))].sort();
}

// --- the scanner itself -------------------------------------------------------------------------

Deno.test("stripSource() blanks comments but not strings that look like them", () => {
  const source = [
    'const url = "http://x//y"; // trailing Deno.exit()',
    "/* block Deno.env",
    "   still block */ const re = /[\"']\\/\\//g;",
    "const t = `a ${`b ${c}`} d // not a comment`;",
    "const half = total / 2; // Deno.connect",
  ].join("\n");
  const { code, bare } = stripSource(source);
  assert.equal(code.split("\n").length, 5, "line breaks are kept");
  assert.equal(code.length, source.length, "offsets are kept");
  assert.ok(code.includes('"http://x//y"'));
  assert.ok(!code.includes("trailing"));
  assert.ok(!code.includes("block"));
  assert.ok(code.includes("const re = /[\"']\\/\\//g;"));
  assert.ok(code.includes("`a ${`b ${c}`} d // not a comment`"));
  assert.ok(code.includes("total / 2;"));
  assert.ok(!code.includes("Deno.connect"));
  assert.ok(!bare.includes("http"));
  assert.ok(!bare.includes("not a comment"));
  assert.ok(bare.includes("${c}"), "template expressions stay code");
  assert.ok(bare.includes("const half = total / 2;"));
});

Deno.test("readEdges() reads imports, re-exports, type-only and dynamic imports", () => {
  const code = stripSource([
    'import { a } from "./a.ts";',
    'import type { B } from "../b.ts";',
    'import { type C, type D } from "./c.ts";',
    'import { type E, f } from "./e.ts";',
    "import {",
    "  g,",
    "  h,",
    '} from "hono";',
    'import "./side.ts";',
    'export { x, type Y } from "./x.ts";',
    'export * from "./all.ts";',
    'export type { Z } from "./z.ts";',
    'const m = await import("./dyn.ts");',
    "const n = await import(computed);",
    'export function notAnEdge() { return "from \\"./nope.ts\\""; }',
    '// import { gone } from "./commented.ts";',
  ].join("\n")).code;
  const edges = readEdges("runtime/sub/file.ts", code);
  assert.deepEqual(
    edges.map((e) => `${e.kind} ${e.target}${e.typeOnly ? " (type)" : ""}`),
    [
      "import runtime/sub/a.ts",
      "import runtime/b.ts (type)",
      "import runtime/sub/c.ts (type)",
      "import runtime/sub/e.ts",
      "import hono",
      "import runtime/sub/side.ts",
      "export runtime/sub/x.ts",
      "export runtime/sub/all.ts",
      "export runtime/sub/z.ts (type)",
      "dynamic runtime/sub/dyn.ts",
    ],
  );
});

Deno.test("import rules: the scanner sees the project's files and edges", async () => {
  const files = await sources();
  const paths = files.map((f) => f.path);
  for (
    const expected of [
      "main.ts",
      "runtime/mod.ts",
      "runtime/proxy.ts",
      "runtime/supervisor.ts",
      "runtime/default_main/mod.ts",
      "workers/bootstrap.ts",
    ]
  ) {
    assert.ok(paths.includes(expected), `${expected} was not scanned`);
  }
  const main = files.find((f) => f.path === "main.ts")!;
  assert.ok(main.edges.some((e) => e.target === "runtime/mod.ts"));
  const mod = files.find((f) => f.path === "runtime/mod.ts")!;
  assert.ok(mod.edges.filter((e) => e.kind === "export").length >= 5);
  for (const file of files) {
    for (const edge of file.edges) {
      if (!isProjectPath(edge.target)) continue;
      assert.ok(paths.includes(edge.target), `${file.path} → ${edge.specifier} is not scanned`);
    }
  }
});

// --- the rules ----------------------------------------------------------------------------------

Deno.test("import rules: main.ts imports only runtime/mod.ts and node: builtins", async () => {
  assert.deepEqual(
    await forbiddenEdges(
      (path) => path === "main.ts",
      (edge) => edge.target === "runtime/mod.ts" || isNodeBuiltin(edge.target),
    ),
    [],
  );
});

Deno.test("import rules: workers/ imports only runtime/protocol.ts, runtime/serve_capture.ts and workers/", async () => {
  assert.deepEqual(
    await forbiddenEdges(
      (path) => path.startsWith("workers/"),
      (edge) =>
        edge.target === "runtime/protocol.ts" || edge.target === "runtime/serve_capture.ts" ||
        (edge.target.startsWith("workers/") && isProjectPath(edge.target)),
    ),
    [],
  );
});

Deno.test("import rules: runtime/ never imports workers/", async () => {
  assert.deepEqual(
    await forbiddenEdges(
      (path) => path.startsWith("runtime/"),
      (edge) => !edge.target.startsWith("workers/"),
    ),
    [],
  );
});

Deno.test("import rules: only runtime/default_main/ imports hono or any other package", async () => {
  assert.deepEqual(
    await forbiddenEdges(
      (path) => !path.startsWith("runtime/default_main/"),
      (edge) => !isThirdParty(edge.target),
    ),
    [],
  );
  const hono = await forbiddenEdges(
    (path) => path.startsWith("runtime/default_main/"),
    (edge) => !/^(npm:)?hono(@|\/|$)/.test(edge.target),
  );
  assert.ok(hono.length > 0, "default_main/ is expected to use hono");
});

Deno.test("import rules: leaf modules import nothing from the project", async () => {
  const leaves = new Set([
    "runtime/protocol.ts",
    "runtime/errors.ts",
    "runtime/log.ts",
    "runtime/permissions.ts",
    "runtime/serve_capture.ts",
  ]);
  assert.deepEqual(
    await forbiddenEdges((path) => leaves.has(path), (edge) => !isProjectPath(edge.target)),
    [],
  );
});

Deno.test("import rules: config.ts imports only errors.ts and types from log.ts", async () => {
  assert.deepEqual(
    await forbiddenEdges(
      (path) => path === "runtime/config.ts",
      (edge) =>
        isNodeBuiltin(edge.target) || edge.target === "runtime/errors.ts" ||
        (edge.target === "runtime/log.ts" && edge.typeOnly),
    ),
    [],
  );
});

Deno.test("import rules: runtime/mod.ts only re-exports", async () => {
  const mod = (await sources()).find((f) => f.path === "runtime/mod.ts")!;
  assert.deepEqual(mod.edges.filter((e) => e.kind !== "export").map((e) => e.specifier), []);
  const rest = mod.code.replace(/^[ \t]*export\s[^;]*?\bfrom\s*["'][^"']+["']\s*;/gm, "").trim();
  assert.equal(rest, "", "runtime/mod.ts has code besides export-from statements");
});

Deno.test("import rules: only runtime/supervisor.ts spawns processes", async () => {
  assert.deepEqual(pathsOf(await filesUsing(/\bnew\s+Deno\s*\.\s*Command\b/)), [
    "runtime/supervisor.ts",
  ]);
  assert.deepEqual(await filesUsing(/\bDeno\s*\.\s*run\s*\(/), []);
});

Deno.test("import rules: only runtime/proxy.ts opens Unix-socket clients", async () => {
  assert.deepEqual(pathsOf(await filesUsing(/\bDeno\s*\.\s*connect\b/)), ["runtime/proxy.ts"]);
  assert.deepEqual(await filesUsing(/\bDeno\s*\.\s*createHttpClient\b/), []);
});

Deno.test("import rules: Deno.exit appears only in main.ts and workers/bootstrap.ts", async () => {
  const allowed = new Set(["main.ts", "workers/bootstrap.ts"]);
  const found = await filesUsing(/\bDeno\s*\.\s*exit\b/);
  assert.ok(pathsOf(found).includes("main.ts"), "the scanner should see main.ts's Deno.exit");
  assert.deepEqual(pathsOf(found).filter((path) => !allowed.has(path)), []);
});

Deno.test("import rules: Deno.env appears only in main.ts and workers/bootstrap.ts", async () => {
  const allowed = new Set(["main.ts", "workers/bootstrap.ts"]);
  const found = await filesUsing(/\bDeno\s*\.\s*env\b/);
  assert.ok(pathsOf(found).includes("main.ts"), "the scanner should see main.ts's Deno.env");
  assert.deepEqual(pathsOf(found).filter((path) => !allowed.has(path)), []);
});

Deno.test("import rules: runtime/ and workers/ have no import cycles", async () => {
  const files = await sources();
  const graph = new Map(
    files.map((f) => [f.path, f.edges.filter((e) => isProjectPath(e.target)).map((e) => e.target)]),
  );
  const cycles: string[] = [];
  const state = new Map<string, "visiting" | "done">();
  const visit = (path: string, trail: string[]) => {
    if (state.get(path) === "done") return;
    if (state.get(path) === "visiting") {
      cycles.push([...trail.slice(trail.indexOf(path)), path].join(" → "));
      return;
    }
    state.set(path, "visiting");
    for (const next of graph.get(path) ?? []) visit(next, [...trail, path]);
    state.set(path, "done");
  };
  for (const path of graph.keys()) visit(path, []);
  assert.deepEqual(cycles, []);
});
