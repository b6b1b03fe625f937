import assert from "node:assert/strict";
import { affectedServices } from "../../runtime/watch.ts";

Deno.test("affectedServices() maps a changed file to the services it belongs to", async (t) => {
  const live = ["/p/functions/a", "/p/functions/ab", "/p/other/c"];
  const cases: [string, string[]][] = [
    ["/p/functions/a/index.ts", ["/p/functions/a"]],
    ["/p/functions/ab/deep/x.json", ["/p/functions/ab"]],
    ["/p/functions/_shared/cors.ts", ["/p/functions/a", "/p/functions/ab"]],
    ["/p/functions/README.md", []],
    ["/p/other/c/index.ts", ["/p/other/c"]],
    ["/p/functions/abc/index.ts", []],
  ];
  for (const [changed, expected] of cases) {
    await t.step(changed, () => assert.deepEqual(affectedServices(changed, live), expected));
  }
});
