import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import {
  type CredentialRow,
  createCredential,
  listCredentials,
  revokeCredentials,
} from '../auth/credentials.repo.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { findUser } from '../directory/users.repo.ts';
import { DirectoryId } from '../directory/users.schema.ts';
import { notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { DeletedNoBody, security } from '../http/schemas.ts';

const tags = ['directory'];
const DAY_MS = 86_400_000;

const Time = Type.String({ format: 'date-time' });
const TokenFields = {
  id: Type.String(),
  user_id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  prefix: Type.String({ description: 'The first characters of the token, to tell tokens apart' }),
  created_at: Time,
  expires_at: Type.Union([Time, Type.Null()]),
  revoked_at: Type.Union([Time, Type.Null()]),
};
const Token = Type.Object(TokenFields);
const TokenWithSecret = Type.Object({
  ...TokenFields,
  token: Type.String({ description: 'The token; shown only in this response, Herald keeps only a hash' }),
});
const TokenCreate = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    expires_in_days: Type.Optional(
      Type.Integer({ minimum: 1, maximum: 3650, description: 'Never expires if unset' }),
    ),
  },
  { additionalProperties: false },
);
const UserParams = Type.Object({ id: DirectoryId });
const TokenParams = Type.Object({ id: DirectoryId, tokenId: Type.String({ minLength: 1, maxLength: 100 }) });

/** The API shape of a user token: metadata only, never the hash. */
function presentToken(row: CredentialRow) {
  return {
    id: row.id,
    user_id: row.owner_id!,
    name: row.name,
    prefix: row.prefix,
    created_at: iso(row.created_at),
    expires_at: iso(row.expires_at),
    revoked_at: iso(row.revoked_at),
  };
}

/**
 * Admin API for user tokens: the credentials an inbox client (a web app, a mobile app) uses for `/v1/me`.
 * Issue them to a user after signing them in with your own identity provider.
 */
export async function tokensRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.post(
    '/users/:id/tokens',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "Issue a token for a user's inbox; the token is shown only in this answer",
        params: UserParams,
        body: Type.Optional(TokenCreate),
        response: { 201: TokenWithSecret },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const body = request.body ?? {};
      const now = deps.clock.now();
      const expiresAt = body.expires_in_days === undefined ? null : now + body.expires_in_days * DAY_MS;
      const created = await db.transaction().execute(async (trx) => {
        if ((await findUser(trx, id)) === undefined) throw notFound('User', id);
        const key = await createCredential(trx, {
          kind: 'user',
          ownerId: id,
          name: body.name ?? null,
          expiresAt,
          now,
        });
        await auditAdmin(trx, now, 'user.token_created', ['user', id], {
          token_id: key.credential.id,
          prefix: key.credential.prefix,
          expires_at: expiresAt,
        });
        return key;
      });
      reply.code(201);
      return { ...presentToken(created.credential), token: created.token };
    },
  );

  app.get(
    '/users/:id/tokens',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "List a user's tokens (metadata only, revoked ones included)",
        params: UserParams,
        querystring: Type.Object(PageQuery),
        response: { 200: Page(Token) },
      },
    },
    async (request) => {
      const { id } = request.params;
      const { limit = 50 } = request.query;
      const after = decodeCursor(request.query.cursor);
      if ((await findUser(db, id)) === undefined) throw notFound('User', id);
      // A user holds a handful of tokens: paging the short list here is simpler than another query.
      const rows = (await listCredentials(db, 'user', id)).filter((r) => after === undefined || r.id > after);
      return toPage(rows.slice(0, limit + 1), limit, (r) => r.id, presentToken);
    },
  );

  app.delete(
    '/users/:id/tokens/:tokenId',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "Revoke one of a user's tokens (their open streams close)",
        params: TokenParams,
        response: { 204: DeletedNoBody },
      },
    },
    async (request, reply) => {
      const { id, tokenId } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        const tokens = await listCredentials(trx, 'user', id);
        if (!tokens.some((t) => t.id === tokenId)) throw notFound('Token', tokenId);
        const revoked = await revokeCredentials(trx, { kind: 'user', ownerId: id, id: tokenId }, now);
        if (revoked > 0) {
          await auditAdmin(trx, now, 'user.token_revoked', ['user', id], { token_id: tokenId });
        }
      });
      deps.auth.forget();
      return reply.code(204).send();
    },
  );
}
