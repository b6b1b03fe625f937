/**
 * The function learns who called: `x-forwarded-for` gets the client's address appended, and
 * `x-forwarded-proto` is set when the client did not send one.
 */

import assert from "node:assert/strict";
import { fetchText, FUNCTION_FIXTURES, withRuntime } from "../test_utils.ts";

Deno.test("x-forwarded-for and x-forwarded-proto reach the function", async () => {
  await withRuntime({ args: [`--functions=${FUNCTION_FIXTURES}`] }, async (rt) => {
    const headersSeen = async (headers?: HeadersInit) => {
      const { body } = await fetchText(`${rt.url}/echo`, { headers });
      return new Map<string, string>(JSON.parse(body).headers);
    };
    const direct = await headersSeen();
    assert.equal(direct.get("x-forwarded-for"), "127.0.0.1");
    assert.equal(direct.get("x-forwarded-proto"), "http");
    const proxied = await headersSeen({
      "x-forwarded-for": "203.0.113.7",
      "x-forwarded-proto": "https",
    });
    assert.equal(proxied.get("x-forwarded-for"), "203.0.113.7, 127.0.0.1");
    assert.equal(proxied.get("x-forwarded-proto"), "https");
    const { body } = await fetchText(`${rt.url}/functions/v1/echo`);
    const viaPrefix = new Map<string, string>(JSON.parse(body).headers);
    assert.equal(viaPrefix.get("x-forwarded-for"), "127.0.0.1");
  });
});
