import assert from "node:assert/strict";
import { judge, junitXml, matchesSubset } from "../../runtime/smoke.ts";

Deno.test("matchesSubset() matches objects by key and everything else exactly", async (t) => {
  const cases: [unknown, unknown, boolean][] = [
    [{ a: 1, b: 2 }, { a: 1 }, true],
    [{ a: { b: [1, 2], c: "x" } }, { a: { b: [1, 2] } }, true],
    [{ a: 1 }, { a: 2 }, false],
    [{ a: [1, 2, 3] }, { a: [1, 2] }, false],
    [[{ id: 1, x: 0 }], [{ id: 1 }], true],
    ["text", "text", true],
    [null, null, true],
    [{ a: 1 }, null, false],
    [[1], { 0: 1 }, false],
  ];
  for (const [actual, expected, result] of cases) {
    await t.step(`${JSON.stringify(actual)} ⊇ ${JSON.stringify(expected)}`, () => {
      assert.equal(matchesSubset(actual, expected), result);
    });
  }
});

Deno.test("judge() checks status, body substring and JSON subset", () => {
  assert.equal(judge({}, 404, "nope"), undefined);
  assert.match(judge({}, 503, "boot")!, /expected a status below 500, got 503/);
  assert.match(judge({ status: 201 }, 200, "")!, /expected status 201, got 200/);
  assert.equal(judge({ status: 200, bodyIncludes: "ell" }, 200, "hello"), undefined);
  assert.match(judge({ bodyIncludes: "bye" }, 200, "hello")!, /does not contain "bye"/);
  assert.equal(judge({ json: { a: 1 } }, 200, '{"a":1,"b":2}'), undefined);
  assert.match(judge({ json: { a: 1 } }, 200, "not json")!, /body is not JSON/);
  assert.match(judge({ json: { a: 2 } }, 200, '{"a":1}')!, /does not match/);
});

Deno.test("junitXml() writes one suite per function with escaped failures", () => {
  const xml = junitXml([
    { functionName: "a", caseName: "GET /a", passed: true, durationMs: 12 },
    {
      functionName: "a",
      caseName: 'posts "x" & <y>',
      passed: false,
      failure: "expected status 200, got 500: <html>",
      durationMs: 3,
    },
    { functionName: "b", caseName: "GET /b", passed: true, durationMs: 1 },
  ]);
  assert.match(
    xml,
    /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites [^>]*tests="3" failures="1">/,
  );
  assert.equal(xml.match(/<testsuite /g)?.length, 2);
  assert.equal(xml.match(/<testcase /g)?.length, 3);
  assert.match(xml, /<testsuite name="a" tests="2" failures="1" time="0.015">/);
  assert.match(xml, /name="posts &#34;x&#34; &#38; &#60;y&#62;"/);
  assert.match(xml, /<failure message="expected status 200, got 500: &#60;html&#62;"\/>/);
  assert.ok(!/<[^>]*<(?!\/|\?|testsuite|testcase|failure)/.test(xml), "no raw < inside tags");
});
