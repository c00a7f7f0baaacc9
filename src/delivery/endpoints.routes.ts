import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { REDACTED, redactUrl } from '../audit/redact.ts';
import type { EndpointRow } from '../db/tables.ts';
import type { App, Deps } from '../deps.ts';
import { invalid, invalidMany, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { DeletedNoBody, security } from '../http/schemas.ts';
import { cancelPendingForEndpoint } from './deliveries.repo.ts';
import { deliveriesRoutes } from './deliveries.routes.ts';
import { headersOf, presentEndpoint, presentUrl } from './endpoints.present.ts';
import {
  deleteEndpoint,
  findEndpoint,
  insertEndpoint,
  listEndpoints,
  updateEndpoint,
} from './endpoints.repo.ts';
import { Endpoint, EndpointParams, EndpointPut, EndpointSecret } from './endpoints.schema.ts';
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
      const givenUrl = checkEndpointUrl(body.url);
      // The redaction placeholder, as reads show the secret, keeps the stored one like leaving it out does.
      const secret = body.secret === REDACTED ? undefined : body.secret;
      if (secret !== undefined && !isValidWebhookSecret(secret)) {
        throw invalid('body.secret', 'must be "whsec_" followed by the base64 of 24 to 64 random bytes');
      }
      // A chat URL as reads show it keeps the stored URL's host, so this checks where it really goes.
      await checkUrl(givenUrl, allow);
      checkExpressions(body.filter, body.transform, body.kind ?? 'webhook');
      const givenHeaders = body.headers === undefined ? undefined : checkHeaders(body.headers);
      const now = deps.clock.now();
      const fields = {
        types: JSON.stringify(body.types),
        kind: body.kind ?? ('webhook' as const),
        filter: body.filter ?? null,
        transform: body.transform ?? null,
        payload: body.payload ?? ('full' as const),
        rate_limit: body.rate_limit ?? null,
        ordered: body.ordered === true ? 1 : 0,
        updated_at: now,
      };
      const result = await db.transaction().execute(async (trx) => {
        const existing = await findEndpoint(trx, id);
        const url = keptUrl(givenUrl, existing);
        const headers = givenHeaders === undefined ? undefined : keptHeaders(givenHeaders, existing, url);
        const kept = { url, headers: headers === undefined ? null : JSON.stringify(headers) };
        let row: EndpointRow;
        if (existing === undefined) {
          const enabled = body.enabled ?? true;
          row = await insertEndpoint(trx, {
            id,
            ...fields,
            ...kept,
            description: body.description ?? null,
            secret: secret ?? newWebhookSecret(),
            status: enabled ? 'enabled' : 'disabled',
            disabled_reason: enabled ? null : 'manual',
            failures: 0,
            failing_since: null,
            paused_until: null,
            created_at: now,
          });
        } else {
          const patch: Parameters<typeof updateEndpoint>[2] = { ...fields, ...kept };
          if (body.description !== undefined) patch.description = body.description;
          if (secret !== undefined) patch.secret = secret;
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
          auditedChange(row, existing, cancelled),
        );
        return { row, created: existing === undefined };
      });
      reply.code(result.created ? 201 : 200);
      const shown = presentEndpoint(result.row, now);
      // The answer that set the signing secret shows it (generated ones are seen nowhere else unless revealed).
      return result.created || secret !== undefined ? { ...shown, secret: result.row.secret } : shown;
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

  app.get(
    '/endpoints/:id/secret',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          "Reveal a webhook endpoint's signing secret, for a receiver to verify with; the reveal is audited",
        params: EndpointParams,
        response: { 200: EndpointSecret },
      },
    },
    async (request) => {
      const { id } = request.params;
      const now = deps.clock.now();
      return db.transaction().execute(async (trx) => {
        const row = await findEndpoint(trx, id);
        if (row === undefined) throw notFound('Endpoint', id);
        await auditAdmin(trx, now, 'endpoint.secret_revealed', ['endpoint', id]);
        return { secret: row.secret };
      });
    },
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
        response: { 204: DeletedNoBody },
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

/**
 * What the audit log records of a saved endpoint: where it points (a chat URL by scheme and host only, a
 * webhook URL without its query), its header names, and of its secrets only whether they changed.
 */
function auditedChange(row: EndpointRow, before: EndpointRow | undefined, cancelled: number) {
  const headers = headersOf(row);
  return {
    kind: row.kind,
    url: redactUrl(row.url, { path: row.kind === 'webhook' }),
    types: JSON.parse(row.types) as string[],
    status: row.status,
    headers: Object.keys(headers),
    ...(before === undefined
      ? {}
      : {
          url_changed: before.url !== row.url,
          secret_changed: before.secret !== row.secret,
          headers_changed: changedNames(headersOf(before), headers),
        }),
    ...(cancelled > 0 ? { deliveries_cancelled: cancelled } : {}),
  };
}

/** The header names added, removed or given another value. */
function changedNames(before: Record<string, string>, after: Record<string, string>): string[] {
  const names = new Set([...Object.keys(before), ...Object.keys(after)]);
  return [...names].filter((name) => before[name] !== after[name]).sort();
}

/**
 * The URL to store: a chat URL sent back as reads show it keeps the stored one; that form of a URL with
 * nothing stored to keep is refused rather than saved.
 */
function keptUrl(given: string, existing: EndpointRow | undefined): string {
  if (existing !== undefined && given === presentUrl(existing)) return existing.url;
  if (given === redactUrl(given, { path: false })) {
    throw invalid(
      'body.url',
      `"${REDACTED}" keeps a stored URL of the same host, and there is none; send it whole`,
    );
  }
  return given;
}

/**
 * The headers to store: a value sent as REDACTED keeps the stored value of that header, but only while the URL
 * stays the same; otherwise whoever may edit an endpoint could point it at a host of theirs and collect the
 * credentials its headers carry.
 */
function keptHeaders(
  given: Record<string, string>,
  existing: EndpointRow | undefined,
  url: string,
): Record<string, string> {
  const stored = Object.entries(existing === undefined ? {} : headersOf(existing));
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(given)) {
    if (value !== REDACTED) {
      headers[name] = value;
      continue;
    }
    const kept = stored.find(([storedName]) => storedName.toLowerCase() === name.toLowerCase());
    if (kept === undefined)
      throw invalid(`body.headers.${name}`, `"${REDACTED}" keeps a stored value, and there is none`);
    if (existing!.url !== url) {
      throw invalid(
        `body.headers.${name}`,
        `the endpoint now sends to another URL; send the value again rather than "${REDACTED}"`,
      );
    }
    headers[name] = kept[1];
  }
  return headers;
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
