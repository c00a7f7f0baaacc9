import { Type } from 'typebox';
import { appendAudit } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { DeviceRow } from '../db/tables.ts';
import { deleteDevice, listDevices, upsertDevice } from '../delivery/devices.repo.ts';
import { allowList, checkUrl } from '../delivery/ssrf.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, notFound } from '../errors.ts';
import type { Principal } from '../http/auth.ts';
import { Deleted, security } from '../http/schemas.ts';
import { newId } from '../ids.ts';
import { loadKeys } from '../settings/keys.ts';
import { ChannelConfigError } from './channel.ts';
import { validateSubscription } from './webpush.ts';

const tags = ['devices'];

const WebPushDevice = Type.Object(
  {
    kind: Type.Literal('webpush'),
    subscription: Type.Object(
      {
        endpoint: Type.String({ minLength: 1, maxLength: 2048 }),
        keys: Type.Object({ p256dh: Type.String({ maxLength: 200 }), auth: Type.String({ maxLength: 100 }) }),
        expirationTime: Type.Optional(Type.Union([Type.Null(), Type.Number()])),
      },
      { description: "The browser's PushSubscription as `JSON.stringify(subscription)` gives it" },
    ),
    name: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
const TokenDevice = Type.Object(
  {
    kind: Type.Union([Type.Literal('fcm'), Type.Literal('apns')]),
    token: Type.String({
      minLength: 1,
      maxLength: 4096,
      // Both kinds of token are printable ASCII: no spaces, control characters or NULs.
      pattern: '^[!-~]+$',
      description: 'FCM registration token, or APNs device token (hex)',
    }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

const Device = Type.Object({
  id: Type.String(),
  kind: Type.String({ description: '`webpush`, `fcm` or `apns`' }),
  name: Type.Union([Type.String(), Type.Null()]),
  address: Type.String({ description: 'The push endpoint, or the start of the token' }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

function present(row: DeviceRow) {
  return {
    id: row.id,
    kind: row.kind,
    name: row.name,
    // A device token is a credential of sorts: show enough to tell devices apart.
    address: row.kind === 'webpush' ? new URL(row.address).origin : `${row.address.slice(0, 8)}…`,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

const me = (principal: Principal): string => (principal as Extract<Principal, { kind: 'user' }>).userId;

/**
 * Push addresses: a user's browser registers its web push subscription (with the VAPID public key from
 * `GET /v1/push/vapid-public-key`), an app registers its FCM or APNs token. Addresses a push service reports
 * gone are removed by the dispatcher.
 */
export async function devicesRoutes(app: App, deps: Deps): Promise<void> {
  const user = deps.auth.require('user');
  const admin = deps.auth.require('admin');
  const db = deps.store.db;
  const allow = allowList(deps.config.outboundAllow);

  app.get(
    '/push/vapid-public-key',
    {
      preHandler: deps.auth.require('user', 'admin'),
      schema: {
        tags,
        security,
        summary:
          "The VAPID public key a browser subscribes with (PushManager.subscribe's applicationServerKey)",
        response: { 200: Type.Object({ public_key: Type.String({ description: 'URL-safe base64' }) }) },
      },
    },
    async () => {
      const own = await db
        .selectFrom('providers')
        .select('config')
        .where('kind', '=', 'webpush')
        .where('enabled', '=', 1)
        .orderBy('priority')
        .executeTakeFirst();
      const configured = own === undefined ? undefined : (JSON.parse(own.config) as { public_key: string });
      return { public_key: configured?.public_key ?? (await loadKeys(db)).vapid.public_key };
    },
  );

  app.post(
    '/me/devices',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'Register a push subscription or device token for me',
        body: Type.Union([WebPushDevice, TokenDevice]),
        response: { 201: Device },
      },
    },
    async (request, reply) => {
      const userId = me(request.principal);
      const body = request.body;
      let address: string;
      let keys: string | null = null;
      if (body.kind === 'webpush') {
        const subscription = checked(() => validateSubscription(body.subscription), 'body.subscription');
        await checkUrl(subscription.endpoint, allow);
        address = subscription.endpoint;
        keys = JSON.stringify(subscription.keys);
      } else {
        address = body.token.trim();
        if (body.kind === 'apns' && !/^[0-9a-fA-F]{64,200}$/.test(address)) {
          throw new HeraldError(
            'validation_failed',
            'body.token: an APNs device token is 64 or more hex digits',
            {
              errors: [{ field: 'body.token', message: 'an APNs device token is 64 or more hex digits' }],
            },
          );
        }
      }
      const now = deps.clock.now();
      const row = await db.transaction().execute(async (trx) => {
        const device = await upsertDevice(trx, {
          id: newId('dev', now),
          user_id: userId,
          kind: body.kind,
          address,
          keys,
          name: body.name ?? null,
          created_at: now,
          updated_at: now,
        });
        await appendAudit(trx, {
          at: now,
          actor: `user:${userId}`,
          action: 'device.registered',
          subject_type: 'device',
          subject_id: device.id,
          data: { kind: body.kind },
        });
        return device;
      });
      reply.code(201);
      return present(row);
    },
  );

  app.get(
    '/me/devices',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'List my push devices',
        response: { 200: Type.Object({ items: Type.Array(Device) }) },
      },
    },
    async (request) => ({ items: (await listDevices(db, me(request.principal))).map(present) }),
  );

  app.delete(
    '/me/devices/:id',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'Remove one of my push devices',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) }),
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      if (!(await deleteDevice(db, me(request.principal), request.params.id)))
        throw notFound('Device', request.params.id);
      reply.code(204);
      return null;
    },
  );

  app.get(
    '/users/:id/devices',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "List a user's push devices",
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
        response: { 200: Type.Object({ items: Type.Array(Device) }) },
      },
    },
    async (request) => ({ items: (await listDevices(db, request.params.id)).map(present) }),
  );
}

function checked<T>(run: () => T, prefix: string): T {
  try {
    return run();
  } catch (error) {
    if (!(error instanceof ChannelConfigError)) throw error;
    const field = `${prefix}${error.path.replaceAll('/', '.')}`;
    throw new HeraldError('validation_failed', `${field}: ${error.message}`, {
      errors: [{ field, message: error.message }],
    });
  }
}
