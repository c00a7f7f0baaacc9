import type { BlockList } from 'node:net';
import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { redactUrl } from '../audit/redact.ts';
import { createCredential, revokeCredentials } from '../auth/credentials.repo.ts';
import { allowList, checkUrl } from '../delivery/ssrf.ts';
import { newWebhookSecret } from '../delivery/webhook.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { HERALD_SOURCE } from '../ops/alerts.ts';
import { keyRoutes } from './keys.routes.ts';
import { presentSource } from './sources.present.ts';
import { deleteSource, findSource, insertSource, listSources, updateSource } from './sources.repo.ts';
import {
  CallbackSecret,
  Source,
  SourceCreate,
  SourceParams,
  SourcePatch,
  SourceWithKey,
} from './sources.schema.ts';

const tags = ['sources'];

/** Admin API for sources (the systems that publish events) and their API keys. */
export async function sourcesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;
  const allow = allowList(deps.config.outboundAllow);

  app.post(
    '/sources',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Register a source; the answer carries its first API key, shown only once',
        body: SourceCreate,
        response: { 201: SourceWithKey },
      },
    },
    async (request, reply) => {
      const { id, name } = request.body;
      if (id === HERALD_SOURCE)
        throw invalid('body.id', `"${HERALD_SOURCE}" is reserved for Herald's own events`);
      const callbackUrl = await checkCallbackUrl(request.body.callback_url ?? null, allow);
      const now = deps.clock.now();
      const created = await db.transaction().execute(async (trx) => {
        const row = await insertSource(trx, {
          id,
          name,
          callback_url: callbackUrl,
          callback_secret: newWebhookSecret(),
          created_at: now,
          updated_at: now,
        });
        if (row === undefined) throw new HeraldError('conflict', `Source "${id}" already exists`);
        const key = await createCredential(trx, { kind: 'source', ownerId: id, now });
        await auditAdmin(trx, now, 'source.created', ['source', id], {
          name,
          callback_url: auditedUrl(callbackUrl),
          key_id: key.credential.id,
        });
        return { row, token: key.token };
      });
      reply.code(201);
      return {
        ...presentSource(created.row),
        callback_secret: created.row.callback_secret!,
        api_key: created.token,
      };
    },
  );

  app.get(
    '/sources',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List sources',
        querystring: Type.Object(PageQuery),
        response: { 200: Page(Source) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listSources(db, { after: decodeCursor(request.query.cursor), limit: limit + 1 });
      return toPage(rows, limit, (r) => r.id, presentSource);
    },
  );

  app.get(
    '/sources/:id',
    {
      preHandler: admin,
      schema: { tags, security, summary: 'Get a source', params: SourceParams, response: { 200: Source } },
    },
    async (request) => presentSource(await mustFind(deps, request.params.id)),
  );

  app.get(
    '/sources/:id/callback-secret',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          "Reveal a source's callback secret, for it to verify write-backs with; the reveal is audited",
        params: SourceParams,
        response: { 200: CallbackSecret },
      },
    },
    async (request) => {
      const { id } = request.params;
      const now = deps.clock.now();
      return db.transaction().execute(async (trx) => {
        const row = await findSource(trx, id);
        if (row === undefined) throw notFound('Source', id);
        await auditAdmin(trx, now, 'source.callback_secret_revealed', ['source', id]);
        return { callback_secret: row.callback_secret };
      });
    },
  );

  app.patch(
    '/sources/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Change a source: its name or callback URL (null removes the callback)',
        params: SourceParams,
        body: SourcePatch,
        response: { 200: Source },
      },
    },
    async (request) => {
      const { id } = request.params;
      const patch: { name?: string; callback_url?: string | null; updated_at: number } = {
        updated_at: deps.clock.now(),
      };
      if (request.body.name !== undefined) patch.name = request.body.name;
      if (request.body.callback_url !== undefined)
        patch.callback_url = await checkCallbackUrl(request.body.callback_url, allow);
      const row = await db.transaction().execute(async (trx) => {
        const updated = await updateSource(trx, id, patch);
        if (updated === undefined) throw notFound('Source', id);
        const { updated_at: _, ...changes } = patch;
        if (changes.callback_url !== undefined) changes.callback_url = auditedUrl(changes.callback_url);
        await auditAdmin(trx, patch.updated_at, 'source.updated', ['source', id], changes);
        return updated;
      });
      return presentSource(row);
    },
  );

  app.delete(
    '/sources/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a source and revoke its API keys',
        params: SourceParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteSource(trx, id))) throw notFound('Source', id);
        const revoked = await revokeCredentials(trx, { kind: 'source', ownerId: id }, now);
        await auditAdmin(trx, now, 'source.deleted', ['source', id], { keys_revoked: revoked });
      });
      deps.auth.forget();
      return reply.code(204).send(null);
    },
  );

  await keyRoutes(app, deps);
}

/** A callback URL as the audit log records it: without its query, which may carry a token. */
function auditedUrl(url: string | null): string | null {
  return url === null ? null : redactUrl(url, { path: true });
}

async function mustFind(deps: Deps, id: string) {
  const row = await findSource(deps.store.db, id);
  if (row === undefined) throw notFound('Source', id);
  return row;
}

/**
 * A callback URL must be an absolute http(s) URL without credentials (write-backs are signed instead, and a
 * password in a URL ends up in logs), and must not point at an address Herald may not reach (SSRF; checked
 * again on every write-back).
 */
async function checkCallbackUrl(value: string | null, allow: BlockList): Promise<string | null> {
  if (value === null) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid('body.callback_url', 'must be an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw invalid('body.callback_url', 'must be an http or https URL');
  }
  if (url.username !== '' || url.password !== '') {
    throw invalid('body.callback_url', 'must not contain a user name or password');
  }
  await checkUrl(value, allow);
  return value;
}
