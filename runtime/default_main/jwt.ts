/**
 * JWT checks of the built-in main service, with `supabase functions serve`'s answers: HS256 with
 * a shared secret, ES256/RS256 with a JSON Web Key Set (inline, from a file or from a URL).
 */

import {
  createLocalJWKSet,
  createRemoteJWKSet,
  customFetch,
  decodeProtectedHeader,
  type JSONWebKeySet,
  jwtVerify,
} from "jose";
import { ConfigError } from "../errors.ts";

/** What verifies tokens: a secret, a key set, or both. */
export interface JwtKeys {
  /** HS256 shared secret. */
  secret?: string;
  /** Key set for ES256/RS256: inline JSON, a file path, or an `http(s)://` URL. */
  jwks?: string;
}

/** The outcome of checking a request's `Authorization` header. */
export type JwtVerdict = { ok: true } | { ok: false; msg: string };

/** Checks an `Authorization` header value. */
export type JwtVerifier = (authorization: string | null) => Promise<JwtVerdict>;

const ASYMMETRIC_ALGORITHMS = ["ES256", "RS256"];

type KeySet = ReturnType<typeof createLocalJWKSet> | ReturnType<typeof createRemoteJWKSet>;

async function loadKeySet(jwks: string): Promise<KeySet> {
  if (/^https?:\/\//.test(jwks)) {
    return createRemoteJWKSet(new URL(jwks), {
      // jose rejects a non-200 answer without reading it: release its body here.
      [customFetch]: async (url: string, init: RequestInit) => {
        const response = await fetch(url, init);
        if (response.status !== 200) await response.body?.cancel();
        return response;
      },
    });
  }
  let text = jwks;
  if (!jwks.trimStart().startsWith("{")) {
    try {
      text = await Deno.readTextFile(jwks);
    } catch (error) {
      throw new ConfigError(`Cannot read the JWKS file "${jwks}": ${(error as Error).message}`);
    }
  }
  try {
    return createLocalJWKSet(JSON.parse(text) as JSONWebKeySet);
  } catch (error) {
    throw new ConfigError(`Invalid JWKS: ${(error as Error).message}`);
  }
}

/**
 * Builds the verifier, or returns `undefined` when no key is configured.
 *
 * @throws {ConfigError} when the key set cannot be read
 */
export async function createJwtVerifier(keys: JwtKeys): Promise<JwtVerifier | undefined> {
  if (!keys.secret && !keys.jwks) return undefined;
  const secret = keys.secret ? new TextEncoder().encode(keys.secret) : undefined;
  const keySet = keys.jwks ? await loadKeySet(keys.jwks) : undefined;
  return async (authorization) => {
    if (!authorization) return { ok: false, msg: "Error: Missing authorization header" };
    const [scheme, token] = authorization.split(" ");
    if (scheme !== "Bearer" || !token) {
      return { ok: false, msg: "Error: Auth header is not 'Bearer {token}'" };
    }
    try {
      const { alg } = decodeProtectedHeader(token);
      if (alg === "HS256" && secret) {
        await jwtVerify(token, secret, { algorithms: ["HS256"] });
        return { ok: true };
      }
      if (alg && ASYMMETRIC_ALGORITHMS.includes(alg) && keySet) {
        await jwtVerify(token, keySet, { algorithms: ASYMMETRIC_ALGORITHMS });
        return { ok: true };
      }
    } catch {
      // Malformed, badly signed or expired: all the same answer.
    }
    return { ok: false, msg: "Invalid JWT" };
  };
}
