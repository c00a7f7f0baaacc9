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
const CACHE_MAX = 10_000;

/**
 * Resolves bearer tokens to principals. Lookups are cached for a few seconds so the hot ingest path does not
 * read the credentials table on every request; revoking on this node clears the cache at once, other nodes
 * follow within {@link CACHE_MS}.
 */
export class Authenticator {
  readonly #ctx: Context;
  readonly #adminHash: Buffer | undefined;
  readonly #cache = new Map<string, { principal: Principal | null; until: number }>();

  constructor(ctx: Context) {
    this.#ctx = ctx;
    const token = ctx.config.adminToken;
    this.#adminHash = token === undefined ? undefined : Buffer.from(hashToken(token));
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
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
    if (!match) return null;
    const token = match[1]!;
    const hash = hashToken(token);
    if (this.#adminHash !== undefined) {
      const candidate = Buffer.from(hash);
      if (candidate.length === this.#adminHash.length && timingSafeEqual(candidate, this.#adminHash)) {
        return { kind: 'admin' };
      }
    }
    const now = this.#ctx.clock.now();
    const cached = this.#cache.get(hash);
    if (cached !== undefined && cached.until > now) return cached.principal;
    const row = await findCredentialByToken(this.#ctx.store.db, token);
    let principal: Principal | null = null;
    if (row && row.revoked_at === null && (row.expires_at === null || row.expires_at > now)) {
      if (row.kind === 'admin') principal = { kind: 'admin' };
      else if (row.kind === 'source') principal = { kind: 'source', sourceId: row.owner_id! };
      else principal = { kind: 'user', userId: row.owner_id! };
    }
    if (this.#cache.size >= CACHE_MAX) this.#cache.clear();
    this.#cache.set(hash, { principal, until: now + CACHE_MS });
    return principal;
  }

  /** Drops cached lookups; call after revoking or rotating credentials. */
  forget(): void {
    this.#cache.clear();
  }
}
