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

Deno.test("x-request-id is made when absent, kept when given, and quoted in -v request logs", async () => {
  await withRuntime({ args: [`--functions=${FUNCTION_FIXTURES}`, "-v"] }, async (rt) => {
    const seen = async (headers?: HeadersInit) =>
      new Map<string, string>(
        JSON.parse((await fetchText(`${rt.url}/echo/x`, { headers })).body).headers,
      );
    const made = (await seen()).get("x-request-id");
    assert.match(made ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const given = await seen({ "x-request-id": "req-42", traceparent });
    assert.equal(given.get("x-request-id"), "req-42");
    assert.equal(given.get("traceparent"), traceparent);
    const log = rt.stderr();
    assert.match(log, new RegExp(`--> GET /echo/x 200 [\\d.]+ms fn=echo pid=\\d+ id=${made}`));
    assert.match(log, /--> GET \/echo\/x 200 [\d.]+ms fn=echo pid=\d+ id=req-42/);
  });
});
