import { timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { findCredentialByToken } from '../auth/credentials.repo.ts';
import type { Context } from '../context.ts';
import { HeraldError } from '../errors.ts';
import { hashToken } from '../ids.ts';

/** Who is calling, established from the bearer token. */
export type Principal =
  | { kind: 'admin' }
  | { kind: 'source'; sourceId: string }
  | { kind: 'user'; userId: string };

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
}

type Kind = Principal['kind'];

const CACHE_MS = 5_000;

/** The token of an `Authorization: Bearer <token>` header, if that is what it holds. */
export function bearerToken(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
}

/**
 * Whether a token sent is `secret`, a token from configuration: compared as SHA-256 digests, so always equal
 * lengths, in time that does not depend on how much of it matches.
 */
export function matchesSecret(secret: string): (sent: string) => boolean {
  const expected = Buffer.from(hashToken(secret));
  return (sent) => {
    const candidate = Buffer.from(hashToken(sent));
    return candidate.length === expected.length && timingSafeEqual(candidate, expected);
  };
}
const CACHE_MAX = 10_000;

/**
 * Resolves bearer tokens to principals. Lookups are cached for a few seconds, by the token as sent, so the hot
 * ingest path neither hashes the token nor reads the credentials table on every request; revoking on this node
 * clears the cache at once, other nodes follow within {@link CACHE_MS}.
 */
export class Authenticator {
  readonly #ctx: Context;
  readonly #isAdminToken: ((sent: string) => boolean) | undefined;
  readonly #cache = new Map<string, { principal: Principal | null; until: number }>();

  constructor(ctx: Context) {
    this.#ctx = ctx;
    const token = ctx.config.adminToken;
    this.#isAdminToken = token === undefined ? undefined : matchesSecret(token);
  }

  /** A preHandler that lets only the given kinds of principal through (401 without one, 403 for another kind). */
  require(...kinds: Kind[]) {
    return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
      const principal = await this.identify(request.headers.authorization);
      if (principal === null) {
        throw new HeraldError('unauthorized', 'Send a valid token as "Authorization: Bearer <token>"');
      }
      if (!kinds.includes(principal.kind)) {
        throw new HeraldError(
          'forbidden',
          `This needs a ${kinds.join(' or ')} token; a ${principal.kind} token was sent`,
        );
      }
      request.principal = principal;
    };
  }

  async identify(header: string | undefined): Promise<Principal | null> {
    const token = bearerToken(header);
    if (token === undefined) return null;
    const now = this.#ctx.clock.now();
    const cached = this.#cache.get(token);
    if (cached !== undefined && cached.until > now) return cached.principal;
    const found = await this.#lookUp(token, now);
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(token, found);
    return found.principal;
  }

  /** Who the token stands for, and until when that answer may be reused (never past the token's expiry). */
  async #lookUp(token: string, now: number): Promise<{ principal: Principal | null; until: number }> {
    const until = now + CACHE_MS;
    if (this.#isAdminToken?.(token)) return { principal: { kind: 'admin' }, until };
    const row = await findCredentialByToken(this.#ctx.store.db, token);
    if (!row || row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= now))
      return { principal: null, until };
    const expiring = { until: Math.min(until, row.expires_at ?? until) };
    if (row.kind === 'admin') return { principal: { kind: 'admin' }, ...expiring };
    if (row.kind === 'source') return { principal: { kind: 'source', sourceId: row.owner_id! }, ...expiring };
    return { principal: { kind: 'user', userId: row.owner_id! }, ...expiring };
  }

  /** Drops cached lookups; call after revoking or rotating credentials. */
  forget(): void {
    this.#cache.clear();
  }
}
