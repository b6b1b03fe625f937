/**
 * `--watch`: an edited function is served by a fresh worker, requests in flight finish on the old
 * one, and a syntax error shows as a boot error until the next save fixes it.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { fetchText, waitFor, withRuntime } from "../test_utils.ts";

function versioned(version: string): string {
  return `Deno.serve(async (req) => {
  const ms = Number(new URL(req.url).searchParams.get("ms") ?? "0");
  await new Promise((resolve) => setTimeout(resolve, ms));
  return new Response("${version}");
});
`;
}

Deno.test("--watch restarts a function's worker when its files change", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "watch_test_" });
  const entry = join(dir, "live", "index.ts");
  try {
    await Deno.mkdir(join(dir, "live"));
    await Deno.mkdir(join(dir, "_shared"));
    await Deno.writeTextFile(entry, versioned("v1"));
    await withRuntime({ args: [`--functions=${dir}`, "--watch"] }, async (rt) => {
      const body = async () => (await fetchText(`${rt.url}/live`)).body;

      await t.step(
        "an edit is served by a fresh worker; the request in flight finishes",
        async () => {
          assert.equal(await body(), "v1");
          const inFlight = fetchText(`${rt.url}/live?ms=600`);
          await new Promise((resolve) => setTimeout(resolve, 100));
          await Deno.writeTextFile(entry, versioned("v2"));
          await waitFor(async () => (await body()) === "v2", 5000, "v2 to be served");
          assert.equal((await inFlight).body, "v1");
        },
      );

      await t.step("a syntax error is a boot error until the next save fixes it", async () => {
        await Deno.writeTextFile(entry, "export const broken = ;\n");
        await waitFor(
          async () => (await fetchText(`${rt.url}/live`)).status === 503,
          5000,
          "the boot error",
        );
        await Deno.writeTextFile(entry, versioned("v3"));
        await waitFor(async () => (await body()) === "v3", 5000, "v3 to be served");
      });

      await t.step(
        "an edit in a shared _ folder restarts the functions of the folder",
        async () => {
          const [pid] = await rt.childPids();
          await Deno.writeTextFile(join(dir, "_shared", "util.ts"), "export const x = 1;\n");
          await waitFor(
            async () => {
              await body();
              const pids = await rt.childPids();
              return pids.length === 1 && pids[0] !== pid;
            },
            5000,
            "a new worker",
          );
        },
      );
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--watch reloads a custom main service without dropping the listener", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "watch_main_test_" });
  const entry = join(dir, "index.ts");
  const mainService = (text: string) => `Deno.serve(() => new Response("${text}"));\n`;
  try {
    await Deno.writeTextFile(entry, mainService("main v1"));
    await withRuntime({ args: [`--main-service=${dir}`, "--watch"] }, async (rt) => {
      const body = async () => (await fetchText(`${rt.url}/`)).body;
      await t.step("an edit is served by the reloaded main service", async () => {
        assert.equal(await body(), "main v1");
        await Deno.writeTextFile(entry, mainService("main v2"));
        await waitFor(async () => (await body()) === "main v2", 5000, "main v2");
      });
      await t.step("a broken edit keeps the previous main service serving", async () => {
        const mark = rt.stderr().length;
        await Deno.writeTextFile(entry, "export const broken = ;\n");
        await waitFor(
          () => rt.stderr().slice(mark).includes("main service not reloaded"),
          5000,
          "the reload error",
        );
        assert.equal(await body(), "main v2");
        await Deno.writeTextFile(entry, mainService("main v3"));
        await waitFor(async () => (await body()) === "main v3", 5000, "main v3");
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
