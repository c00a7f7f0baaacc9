import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { REDACTED } from '../audit/redact.ts';
import { iso } from '../clock.ts';
import type { ProviderRow } from '../db/tables.ts';
import { presentCircuit } from '../delivery/endpoints.present.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { ChannelConfigError } from './channel.ts';
import { deleteProvider, findProvider, listProviders, upsertProvider } from './providers.repo.ts';
import { PROVIDER_KINDS } from './registry.ts';

const tags = ['providers'];

const ProviderId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });
const Params = Type.Object({ id: ProviderId });
const Kind = Type.Union(
  [
    Type.Literal('smtp'),
    Type.Literal('twilio'),
    Type.Literal('webpush'),
    Type.Literal('fcm'),
    Type.Literal('apns'),
  ],
  {
    description:
      '`smtp` (email), `twilio` (SMS, any Twilio-compatible API), `webpush` (your own VAPID keys instead of the generated ones), `fcm` and `apns` (mobile push)',
  },
);

const ProviderPut = Type.Object(
  {
    kind: Kind,
    name: Type.Optional(Type.Union([Type.Null(), Type.String({ maxLength: 200 })])),
    config: Type.Record(Type.String(), Type.Unknown(), {
      description:
        'The kind\'s settings (see the README). Secrets are never shown again; send "********" to keep a stored one',
    }),
    priority: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 1000,
        default: 100,
        description: 'Lower is tried first (failover order)',
      }),
    ),
    enabled: Type.Optional(Type.Boolean({ default: true })),
  },
  { additionalProperties: false },
);

const ChannelName = Type.Union([Type.Literal('email'), Type.Literal('push'), Type.Literal('sms')]);

const Provider = Type.Object({
  id: Type.String(),
  channel: ChannelName,
  kind: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  config: Type.Record(Type.String(), Type.Unknown(), { description: 'With secrets replaced by "********"' }),
  priority: Type.Integer(),
  enabled: Type.Boolean(),
  circuit: Type.Object({
    state: Type.String({ description: '`closed`, `failing`, `paused` or `probing`' }),
    failures: Type.Integer(),
    failing_since: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
    paused_until: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  }),
  last_error: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

function present(row: ProviderRow, now: number) {
  const kind = PROVIDER_KINDS.get(row.kind);
  const config = JSON.parse(row.config) as unknown;
  return {
    id: row.id,
    channel: row.channel,
    kind: row.kind,
    name: row.name,
    config: kind === undefined ? {} : kind.redact(config),
    priority: row.priority,
    enabled: row.enabled === 1,
    circuit: presentCircuit(row, now),
    last_error: row.last_error,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

/**
 * Admin API for channel providers: the SMTP relays, SMS providers and mobile push services Herald sends
 * through, several per channel in failover order. A configuration is checked when saved (a bad SMTP URL, a
 * malformed APNs key, a missing FCM project is a 400 pointing at the field).
 */
export async function providersRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/providers/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a channel provider',
        params: Params,
        body: ProviderPut,
        response: { 200: Provider, 201: Provider },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const body = request.body;
      const kind = PROVIDER_KINDS.get(body.kind)!;
      const now = deps.clock.now();
      const result = await db.transaction().execute(async (trx) => {
        const existing = await findProvider(trx, id);
        if (existing !== undefined && existing.kind !== body.kind) {
          throw invalid(
            'body.kind',
            `provider "${id}" is a ${existing.kind} provider; delete it to change its kind`,
          );
        }
        const stored: unknown = existing === undefined ? undefined : JSON.parse(existing.config);
        const given = stored === undefined ? body.config : keepSecrets(body.config, stored);
        const config = validateConfig(kind, given);
        if (stored !== undefined && JSON.stringify(body.config).includes(REDACTED)) {
          keptSecretsStayPut(config, stored);
        }
        const enabled = body.enabled ?? true;
        const reset = existing === undefined || (enabled && existing.enabled === 0);
        const row = await upsertProvider(trx, {
          id,
          channel: kind.channel as ProviderRow['channel'],
          kind: body.kind,
          name: body.name ?? null,
          config: JSON.stringify(config),
          priority: body.priority ?? 100,
          enabled: enabled ? 1 : 0,
          // A new or re-enabled provider starts with a closed circuit: the operator says it works.
          failures: reset ? 0 : existing.failures,
          failing_since: reset ? null : existing.failing_since,
          paused_until: reset ? null : existing.paused_until,
          last_error: reset ? null : existing.last_error,
          created_at: existing?.created_at ?? now,
          updated_at: now,
        });
        await auditAdmin(
          trx,
          now,
          existing === undefined ? 'provider.created' : 'provider.updated',
          ['provider', id],
          { kind: body.kind, channel: kind.channel, priority: row.priority, enabled },
        );
        return { row, created: existing === undefined };
      });
      reply.code(result.created ? 201 : 200);
      return present(result.row, deps.clock.now());
    },
  );

  app.get(
    '/providers',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List channel providers',
        querystring: Type.Object({
          channel: Type.Optional(ChannelName),
          ...PageQuery,
        }),
        response: { 200: Page(Provider) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listProviders(db, {
        channel: request.query.channel,
        after: decodeCursor(request.query.cursor),
        limit: limit + 1,
      });
      return toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => present(r, deps.clock.now()),
      );
    },
  );

  app.get(
    '/providers/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get a channel provider',
        params: Params,
        response: { 200: Provider },
      },
    },
    async (request) => {
      const row = await findProvider(db, request.params.id);
      if (row === undefined) throw notFound('Provider', request.params.id);
      return present(row, deps.clock.now());
    },
  );

  app.delete(
    '/providers/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a channel provider',
        params: Params,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteProvider(trx, id))) throw notFound('Provider', id);
        await auditAdmin(trx, now, 'provider.deleted', ['provider', id], null);
      });
      reply.code(204);
      return null;
    },
  );
}

// biome-ignore lint/suspicious/noExplicitAny: any kind's validate
function validateConfig(kind: { validate(config: unknown): any }, config: unknown): unknown {
  try {
    return kind.validate(config);
  } catch (error) {
    if (!(error instanceof ChannelConfigError)) throw error;
    const field = `body.config${error.path.replaceAll('/', '.')}`;
    throw new HeraldError('invalid_channel_config', `${field}: ${error.message}`, {
      errors: [{ field, message: error.message }],
    });
  }
}

/**
 * Refuses to keep stored secrets for a configuration that would send them elsewhere: otherwise whoever may
 * edit a provider could point its base URL (or SMTP server) at a host of theirs and collect the secret it sends.
 */
function keptSecretsStayPut(config: unknown, stored: unknown): void {
  const now = destinations(config);
  const before = destinations(stored);
  if (now.length === before.length && now.every((d, i) => d === before[i])) return;
  throw new HeraldError(
    'invalid_channel_config',
    `body.config: it now sends its secrets to ${now.join(', ')} instead of ${before.join(', ')}; send them again rather than "${REDACTED}"`,
    { errors: [{ field: 'body.config', message: 'send the secrets again to change where they go' }] },
  );
}

// The settings that say where a provider sends its secrets: an API's base URL, an OAuth token URI, the SMTP server.
const SECRETS_GO_TO = new Set(['base_url', 'token_uri', 'url']);

/** Where a configuration sends its secrets, at any depth, without passwords. */
function destinations(config: unknown): string[] {
  const found: string[] = [];
  const visit = (value: unknown): void => {
    if (value === null || typeof value !== 'object') return;
    for (const [key, inner] of Object.entries(value)) {
      if (SECRETS_GO_TO.has(key) && typeof inner === 'string' && URL.canParse(inner)) {
        const url = new URL(inner);
        url.password = '';
        found.push(url.href);
      } else visit(inner);
    }
  };
  visit(config);
  return found.sort();
}

/** Puts stored secrets back where the request sent the redaction placeholder. */
function keepSecrets(given: unknown, stored: unknown): unknown {
  if (given === REDACTED) return stored;
  // An SMTP URL shows its password redacted: `smtp://user:********@host`.
  if (typeof given === 'string' && typeof stored === 'string' && given.includes(`:${REDACTED}@`)) {
    if (URL.canParse(given) && URL.canParse(stored)) {
      const url = new URL(given);
      url.password = new URL(stored).password;
      return url.href;
    }
  }
  if (given === null || typeof given !== 'object' || Array.isArray(given)) return given;
  const storedObject =
    stored !== null && typeof stored === 'object' ? (stored as Record<string, unknown>) : {};
  return Object.fromEntries(
    Object.entries(given as Record<string, unknown>).map(([key, value]) => [
      key,
      keepSecrets(value, storedObject[key]),
    ]),
  );
}
