/**
 * `--inspect`: the first worker opens the V8 inspector; while it lives, other workers start without
 * it instead of failing on the taken port.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, waitFor, withRuntime } from "../test_utils.ts";

Deno.test("--inspect opens the inspector in one worker at a time", async () => {
  await withRuntime({
    args: [`--functions=${FUNCTION_FIXTURES}`, "--inspect=127.0.0.1:0"],
  }, async (rt) => {
    assert.equal((await fetchText(`${rt.url}/default-export`)).status, 200);
    await waitFor(
      () =>
        /\[fn:default-export\] Debugger listening on ws:\/\/127\.0\.0\.1:\d+\//.test(rt.stderr()),
      5000,
      "the inspector of the first worker",
    );
    assert.equal((await fetchText(`${rt.url}/echo`)).status, 200);
    assert.match(rt.stderr(), /inspector in use by another worker: "echo" starts without it/);
  });
});
