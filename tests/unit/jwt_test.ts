/**
 * Unit tests for `runtime/default_main/jwt.ts`: the `Authorization` header checks of the built-in
 * main service (HS256 with a secret; ES256/RS256 with a key set inline, from a file or a URL) and
 * their Supabase CLI messages.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import * as jose from "jose";
import { createJwtVerifier, type JwtVerifier } from "../../runtime/default_main/jwt.ts";
import { ConfigError } from "../../runtime/errors.ts";

const SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";
const MISSING = { ok: false, msg: "Error: Missing authorization header" };
const NOT_BEARER = { ok: false, msg: "Error: Auth header is not 'Bearer {token}'" };
const INVALID = { ok: false, msg: "Invalid JWT" };
const VALID = { ok: true };

function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** An HS256 token (or another HMAC algorithm) signed with `secret`. */
function signHmac(
  secret: string,
  options: { alg?: string; exp?: number } = {},
): Promise<string> {
  const jwt = new jose.SignJWT({ role: "authenticated" })
    .setProtectedHeader({ alg: options.alg ?? "HS256", typ: "JWT" })
    .setIssuedAt();
  if (options.exp !== undefined) jwt.setExpirationTime(options.exp);
  return jwt.sign(new TextEncoder().encode(secret));
}

/** A key pair with its public JWK (with `kid` and `alg`), as a Supabase project publishes it. */
interface TestKey {
  alg: "ES256" | "RS256";
  kid: string;
  privateKey: CryptoKey;
  publicJwk: jose.JWK;
}

async function makeKey(alg: "ES256" | "RS256", kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await jose.generateKeyPair(alg);
  const publicJwk = { ...(await jose.exportJWK(publicKey)), kid, alg, use: "sig" };
  return { alg, kid, privateKey, publicJwk };
}

function signWith(key: TestKey, options: { kid?: string; exp?: number } = {}): Promise<string> {
  const jwt = new jose.SignJWT({ role: "authenticated" })
    .setProtectedHeader({ alg: key.alg, kid: options.kid ?? key.kid, typ: "JWT" })
    .setIssuedAt();
  if (options.exp !== undefined) jwt.setExpirationTime(options.exp);
  return jwt.sign(key.privateKey);
}

async function verifierFor(keys: { secret?: string; jwks?: string }): Promise<JwtVerifier> {
  const verify = await createJwtVerifier(keys);
  assert.ok(verify, "createJwtVerifier returned undefined for configured keys");
  return verify;
}

Deno.test("createJwtVerifier() returns undefined when no key is configured", async () => {
  assert.equal(await createJwtVerifier({}), undefined);
  assert.equal(await createJwtVerifier({ secret: "", jwks: "" }), undefined);
});

Deno.test("createJwtVerifier() with a secret checks HS256 tokens", async (t) => {
  const verify = await verifierFor({ secret: SECRET });

  await t.step("a valid token passes", async () => {
    assert.deepEqual(await verify(`Bearer ${await signHmac(SECRET)}`), VALID);
  });

  await t.step("a token with an exp in the future passes", async () => {
    const token = await signHmac(SECRET, { exp: nowSeconds() + 3600 });
    assert.deepEqual(await verify(`Bearer ${token}`), VALID);
  });

  await t.step("a token signed with another secret is Invalid JWT", async () => {
    const token = await signHmac("another-secret-that-is-also-32-characters-long");
    assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
  });

  await t.step("an expired token (exp in the past) is Invalid JWT", async () => {
    const token = await signHmac(SECRET, { exp: nowSeconds() - 60 });
    assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
  });

  await t.step("an unsigned token (alg: none) is Invalid JWT", async () => {
    const token = new jose.UnsecuredJWT({ role: "service_role" }).setIssuedAt().encode();
    assert.equal(jose.decodeProtectedHeader(token).alg, "none");
    assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
  });

  await t.step("an HS512 token signed with the right secret is Invalid JWT", async () => {
    const token = await signHmac(SECRET, { alg: "HS512" });
    assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
  });

  await t.step("an HS256 token with its signature stripped is Invalid JWT", async () => {
    const [header, payload] = (await signHmac(SECRET)).split(".");
    assert.deepEqual(await verify(`Bearer ${header}.${payload}.`), INVALID);
  });

  await t.step("malformed tokens are Invalid JWT", async () => {
    for (const token of ["not-a-jwt", "a.b.c", "eyJhbGciOiJIUzI1NiJ9", "...", "%%%.%%%.%%%"]) {
      assert.deepEqual(await verify(`Bearer ${token}`), INVALID, token);
    }
  });

  await t.step("an ES256 token is Invalid JWT when only a secret is configured", async () => {
    const key = await makeKey("ES256", "k1");
    assert.deepEqual(await verify(`Bearer ${await signWith(key)}`), INVALID);
  });

  await t.step("a missing header is 'Missing authorization header'", async () => {
    assert.deepEqual(await verify(null), MISSING);
    assert.deepEqual(await verify(""), MISSING);
  });

  await t.step("a header that is not 'Bearer <token>' is rejected as such", async () => {
    const token = await signHmac(SECRET);
    for (const header of ["Basic x", "Bearer", "Bearer ", `bearer ${token}`, token]) {
      assert.deepEqual(await verify(header), NOT_BEARER, header);
    }
  });
});

/** Serves `body` as JSON at `/jwks.json` on an ephemeral loopback port; counts the requests. */
function serveJwks(body: unknown) {
  let requests = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (request) => {
    requests++;
    if (new URL(request.url).pathname !== "/jwks.json") {
      return new Response("not found", { status: 404 });
    }
    return Response.json(body);
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/jwks.json`,
    requests: () => requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

Deno.test("createJwtVerifier() with a key set checks ES256 and RS256 tokens", async (t) => {
  const es = await makeKey("ES256", "es-key");
  const rs = await makeKey("RS256", "rs-key");
  const jwks = { keys: [es.publicJwk, rs.publicJwk] };
  const stranger = {
    es: await makeKey("ES256", "es-key"),
    rs: await makeKey("RS256", "rs-key"),
  };
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "jwks.json");
    await Deno.writeTextFile(file, JSON.stringify(jwks));
    await using server = serveJwks(jwks);

    const sources = [
      { name: "inline JSON", jwks: JSON.stringify(jwks) },
      { name: "a file", jwks: file },
      { name: "an http URL", jwks: server.url },
    ];
    for (const source of sources) {
      await t.step(`from ${source.name}`, async (t) => {
        const verify = await verifierFor({ jwks: source.jwks });
        for (const alg of ["ES256", "RS256"] as const) {
          const key = alg === "ES256" ? es : rs;
          const other = alg === "ES256" ? stranger.es : stranger.rs;

          await t.step(`a valid ${alg} token passes`, async () => {
            assert.deepEqual(await verify(`Bearer ${await signWith(key)}`), VALID);
          });

          await t.step(`an expired ${alg} token is Invalid JWT`, async () => {
            const token = await signWith(key, { exp: nowSeconds() - 60 });
            assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
          });

          await t.step(
            `an ${alg} token signed by another key (same kid) is Invalid JWT`,
            async () => {
              assert.deepEqual(await verify(`Bearer ${await signWith(other)}`), INVALID);
            },
          );

          await t.step(`an ${alg} token with an unknown kid is Invalid JWT`, async () => {
            const token = await signWith(other, { kid: "unknown-kid" });
            assert.deepEqual(await verify(`Bearer ${token}`), INVALID);
          });
        }

        await t.step("an HS256 token is Invalid JWT when no secret is configured", async () => {
          assert.deepEqual(await verify(`Bearer ${await signHmac(SECRET)}`), INVALID);
        });
      });
    }

    await t.step("the key set was fetched from the local server", () => {
      assert.ok(server.requests() >= 1, "the key set URL was never requested");
    });

    await t.step("a secret and a key set together accept both kinds of token", async () => {
      const verify = await verifierFor({ secret: SECRET, jwks: JSON.stringify(jwks) });
      assert.deepEqual(await verify(`Bearer ${await signHmac(SECRET)}`), VALID);
      assert.deepEqual(await verify(`Bearer ${await signWith(es)}`), VALID);
      assert.deepEqual(await verify(`Bearer ${await signWith(rs)}`), VALID);
      assert.deepEqual(await verify(`Bearer ${await signWith(stranger.es)}`), INVALID);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function assertUnreachableKeySetRejects(): Promise<void> {
  const key = await makeKey("ES256", "es-key");
  await using server = serveJwks({ keys: [key.publicJwk] });
  const verify = await verifierFor({ jwks: server.url.replace("jwks.json", "missing") });
  assert.deepEqual(await verify(`Bearer ${await signWith(key)}`), INVALID);
  assert.equal(server.requests(), 1);
}

// Regression: jose rejects a non-200 key set answer without reading it; the verifier releases
// the body itself, so the resource sanitizer stays on.
Deno.test(
  "createJwtVerifier() rejects every token when the key set URL answers 404, leaving no body open",
  assertUnreachableKeySetRejects,
);

Deno.test("createJwtVerifier() throws ConfigError when the key set cannot be used", async (t) => {
  const dir = await Deno.makeTempDir();
  try {
    await t.step("a JWKS file that cannot be read", async () => {
      const missing = join(dir, "no-such-jwks.json");
      await assert.rejects(
        createJwtVerifier({ jwks: missing }),
        (e: Error) => e instanceof ConfigError && e.message.includes(missing),
      );
    });

    await t.step("a JWKS path that is a directory", async () => {
      await assert.rejects(createJwtVerifier({ jwks: dir }), ConfigError);
    });

    await t.step("a JWKS file that is not JSON", async () => {
      const file = join(dir, "broken.json");
      await Deno.writeTextFile(file, "this is not json");
      await assert.rejects(createJwtVerifier({ jwks: file }), ConfigError);
    });

    await t.step("inline JSON that is not a key set", async () => {
      await assert.rejects(createJwtVerifier({ jwks: '{"keys": 5}' }), ConfigError);
      await assert.rejects(createJwtVerifier({ jwks: '{"keys": [' }), ConfigError);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
