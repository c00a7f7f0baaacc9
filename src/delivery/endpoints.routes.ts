import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import type { EndpointRow } from '../db/tables.ts';
import type { App, Deps } from '../deps.ts';
import { invalid, invalidMany, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { security } from '../http/schemas.ts';
import { cancelPendingForEndpoint } from './deliveries.repo.ts';
import { deliveriesRoutes } from './deliveries.routes.ts';
import { presentEndpoint } from './endpoints.present.ts';
import {
  deleteEndpoint,
  findEndpoint,
  insertEndpoint,
  listEndpoints,
  updateEndpoint,
} from './endpoints.repo.ts';
import { Endpoint, EndpointParams, EndpointPut } from './endpoints.schema.ts';
import { expressionProblem } from './expressions.ts';
import { allowList, checkUrl } from './ssrf.ts';
import { isValidWebhookSecret, newWebhookSecret } from './webhook.ts';

const tags = ['endpoints'];

/** Admin API for outbound webhook endpoints and their deliveries. */
export async function endpointsRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;
  const allow = allowList(deps.config.outboundAllow);

  app.put(
    '/endpoints/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a webhook endpoint; a signing secret is generated when none is given',
        params: EndpointParams,
        body: EndpointPut,
        response: { 200: Endpoint, 201: Endpoint },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const body = request.body;
      const url = checkEndpointUrl(body.url);
      if (body.secret !== undefined && !isValidWebhookSecret(body.secret)) {
        throw invalid('body.secret', 'must be "whsec_" followed by the base64 of 24 to 64 random bytes');
      }
      await checkUrl(url, allow);
      checkExpressions(body.filter, body.transform, body.kind ?? 'webhook');
      const now = deps.clock.now();
      const fields = {
        url,
        types: JSON.stringify(body.types),
        kind: body.kind ?? ('webhook' as const),
        filter: body.filter ?? null,
        transform: body.transform ?? null,
        headers: body.headers === undefined ? null : JSON.stringify(checkHeaders(body.headers)),
        payload: body.payload ?? ('full' as const),
        rate_limit: body.rate_limit ?? null,
        ordered: body.ordered === true ? 1 : 0,
        updated_at: now,
      };
      const result = await db.transaction().execute(async (trx) => {
        const existing = await findEndpoint(trx, id);
        let row: EndpointRow;
        if (existing === undefined) {
          const enabled = body.enabled ?? true;
          row = await insertEndpoint(trx, {
            id,
            ...fields,
            description: body.description ?? null,
            secret: body.secret ?? newWebhookSecret(),
            status: enabled ? 'enabled' : 'disabled',
            disabled_reason: enabled ? null : 'manual',
            failures: 0,
            failing_since: null,
            paused_until: null,
            created_at: now,
          });
        } else {
          const patch: Parameters<typeof updateEndpoint>[2] = { ...fields };
          if (body.description !== undefined) patch.description = body.description;
          if (body.secret !== undefined) patch.secret = body.secret;
          if (body.enabled === true) {
            // Re-enabling closes the circuit: the operator says the endpoint is fixed.
            Object.assign(patch, {
              status: 'enabled',
              disabled_reason: null,
              failures: 0,
              failing_since: null,
              paused_until: null,
            });
          }
          if (body.enabled === false && existing.status === 'enabled') {
            Object.assign(patch, { status: 'disabled', disabled_reason: 'manual' });
          }
          row = (await updateEndpoint(trx, id, patch))!;
        }
        const cancelled =
          row.status === 'disabled' ? await cancelPendingForEndpoint(trx, id, 'endpoint disabled', now) : 0;
        await auditAdmin(
          trx,
          now,
          existing === undefined ? 'endpoint.created' : 'endpoint.updated',
          ['endpoint', id],
          {
            url,
            types: body.types,
            status: row.status,
            secret_changed:
              existing !== undefined && body.secret !== undefined && body.secret !== existing.secret,
            ...(cancelled > 0 ? { deliveries_cancelled: cancelled } : {}),
          },
        );
        return { row, created: existing === undefined };
      });
      reply.code(result.created ? 201 : 200);
      return presentEndpoint(result.row, now);
    },
  );

  app.get(
    '/endpoints',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List webhook endpoints',
        querystring: Type.Object(PageQuery),
        response: { 200: Page(Endpoint) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listEndpoints(db, { after: decodeCursor(request.query.cursor), limit: limit + 1 });
      const now = deps.clock.now();
      return toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => presentEndpoint(r, now),
      );
    },
  );

  app.get(
    '/endpoints/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get a webhook endpoint',
        params: EndpointParams,
        response: { 200: Endpoint },
      },
    },
    async (request) => presentEndpoint(await mustFind(deps, request.params.id), deps.clock.now()),
  );

  app.delete(
    '/endpoints/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a webhook endpoint; its pending deliveries are cancelled',
        params: EndpointParams,
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteEndpoint(trx, id))) throw notFound('Endpoint', id);
        const cancelled = await cancelPendingForEndpoint(trx, id, 'endpoint deleted', now);
        await auditAdmin(trx, now, 'endpoint.deleted', ['endpoint', id], { deliveries_cancelled: cancelled });
      });
      return reply.code(204).send();
    },
  );

  await deliveriesRoutes(app, deps);
}

async function mustFind(deps: Deps, id: string): Promise<EndpointRow> {
  const row = await findEndpoint(deps.store.db, id);
  if (row === undefined) throw notFound('Endpoint', id);
  return row;
}

/** An endpoint URL is an absolute http(s) URL without credentials (deliveries are signed instead). */
function checkEndpointUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw invalid('body.url', 'must be an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw invalid('body.url', 'must be an http or https URL');
  if (url.username !== '' || url.password !== '') {
    throw invalid('body.url', 'must not contain a user name or password');
  }
  return value;
}

/** Filters and transforms are compiled when saved, so a typo is a 400 pointing at it, not a silent drop later. */
function checkExpressions(
  filter: string | null | undefined,
  transform: string | null | undefined,
  kind: string,
) {
  const problems: { field: string; message: string }[] = [];
  for (const [field, text] of [
    ['body.filter', filter],
    ['body.transform', transform],
  ] as const) {
    const problem = text == null ? undefined : expressionProblem(text);
    if (problem !== undefined)
      problems.push({ field, message: `not a valid JSONata expression: ${problem}` });
  }
  if (transform != null && kind !== 'webhook') {
    problems.push({
      field: 'body.transform',
      message: 'only webhook endpoints take a transform; chat endpoints send cards',
    });
  }
  if (problems.length > 0) throw invalidMany(problems);
}

const RESERVED_HEADERS = new Set([
  'content-type',
  'content-length',
  'host',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
  'user-agent',
]);

function checkHeaders(headers: Record<string, string>): Record<string, string> {
  for (const name of Object.keys(headers)) {
    if (RESERVED_HEADERS.has(name.toLowerCase()))
      throw invalid(`body.headers.${name}`, 'is set by Herald and cannot be replaced');
    if (/[\r\n]/.test(headers[name]!)) throw invalid(`body.headers.${name}`, 'must not contain line breaks');
  }
  return headers;
}
