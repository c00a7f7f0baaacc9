import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { createCredential, listCredentials, revokeCredentials } from '../auth/credentials.repo.ts';
import type { App, Deps } from '../deps.ts';
import { notFound } from '../errors.ts';
import { Deleted, security } from '../http/schemas.ts';
import { presentKey } from './sources.present.ts';
import { findSource } from './sources.repo.ts';
import { Key, KeyCreate, KeyParams, KeyWithSecret, SourceParams } from './sources.schema.ts';

const tags = ['sources'];

/** The API keys of a source: list, create (optionally rotating), revoke. */
export async function keyRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.get(
    '/sources/:id/keys',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "List a source's API keys (metadata only)",
        params: SourceParams,
        response: { 200: Type.Object({ items: Type.Array(Key) }) },
      },
    },
    async (request) => {
      if ((await findSource(db, request.params.id)) === undefined)
        throw notFound('Source', request.params.id);
      const rows = await listCredentials(db, 'source', request.params.id);
      return { items: rows.map(presentKey) };
    },
  );

  app.post(
    '/sources/:id/keys',
    {
      preHandler: admin,
      // The body is optional: `POST .../keys` with none simply adds a key.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags,
        security,
        summary: 'Create another API key; with revoke_others, the others are revoked in the same step',
        params: SourceParams,
        body: KeyCreate,
        response: { 201: KeyWithSecret },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const body = request.body;
      const now = deps.clock.now();
      const created = await db.transaction().execute(async (trx) => {
        if ((await findSource(trx, id)) === undefined) throw notFound('Source', id);
        const revoked = body.revoke_others
          ? await revokeCredentials(trx, { kind: 'source', ownerId: id }, now)
          : 0;
        const key = await createCredential(trx, {
          kind: 'source',
          ownerId: id,
          name: body.name ?? null,
          now,
        });
        await auditAdmin(trx, now, 'source.key_created', ['source', id], {
          key_id: key.credential.id,
          prefix: key.credential.prefix,
          keys_revoked: revoked,
        });
        return { key, revoked };
      });
      if (created.revoked > 0) deps.auth.forget();
      reply.code(201);
      return { ...presentKey(created.key.credential), api_key: created.key.token };
    },
  );

  app.delete(
    '/sources/:id/keys/:keyId',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Revoke one API key of a source',
        params: KeyParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id, keyId } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        const keys = await listCredentials(trx, 'source', id);
        if (!keys.some((k) => k.id === keyId)) throw notFound('API key', keyId);
        const revoked = await revokeCredentials(trx, { kind: 'source', ownerId: id, id: keyId }, now);
        if (revoked > 0) {
          await auditAdmin(trx, now, 'source.key_revoked', ['source', id], { key_id: keyId });
        }
      });
      deps.auth.forget();
      return reply.code(204).send(null);
    },
  );
}
