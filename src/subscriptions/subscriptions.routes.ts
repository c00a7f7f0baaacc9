import { Type } from 'typebox';
import { appendAudit } from '../audit/audit.repo.ts';
import { USER_CHANNELS } from '../channels/registry.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import type { Principal } from '../http/auth.ts';
import { Deleted, security } from '../http/schemas.ts';
import { newId } from '../ids.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import { findSource } from '../sources/sources.repo.ts';
import {
  deleteSubscription,
  insertSubscription,
  listSubscriptions,
  type Subscription,
} from './subscriptions.repo.ts';

const tags = ['preferences'];
const MAX_SUBSCRIPTIONS = 100;

const Channel = Type.Union(
  ['inapp', ...USER_CHANNELS].map((c) => Type.Literal(c)),
  { description: '`inapp`, `email`, `push` or `sms`' },
);

const SubscriptionBody = Type.Object(
  {
    types: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
        minItems: 1,
        maxItems: 20,
        description: 'Event type patterns to follow (`contract.*`)',
      }),
    ),
    source: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'A source id to follow' })),
    subject: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 500,
        description: 'One subject to follow (a case, a contract)',
      }),
    ),
    channels: Type.Optional(
      Type.Array(Channel, {
        maxItems: 4,
        description: 'Where to be told besides the inbox, which always gets it; none by default',
      }),
    ),
  },
  {
    additionalProperties: false,
    description: 'At least one of types, source or subject; all given must hold',
  },
);

const SubscriptionShape = Type.Object({
  id: Type.String(),
  types: Type.Union([Type.Array(Type.String()), Type.Null()]),
  source: Type.Union([Type.String(), Type.Null()]),
  subject: Type.Union([Type.String(), Type.Null()]),
  channels: Type.Array(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
});

const DESCRIPTION = [
  'Following is a route of its own: an event of a followed type, from a followed source, or about a followed',
  'subject reaches the follower whatever the rules say, in the inbox and on the channels the subscription',
  'names (preferences still apply to those). Explain and `GET /v1/events/{id}` show it as',
  '`via: subscription:<id>`.',
].join(' ');

/** The user id of a request that passed `auth.require('user')`. */
const me = (principal: Principal): string => (principal as Extract<Principal, { kind: 'user' }>).userId;

function present(sub: Subscription) {
  return {
    id: sub.id,
    types: sub.types,
    source: sub.source,
    subject: sub.subject,
    channels: ['inapp', ...sub.channels],
    created_at: iso(sub.createdAt),
  };
}

const sameFollowing = (a: Subscription, b: Omit<Subscription, 'id' | 'createdAt'>) =>
  JSON.stringify([a.types, a.source, a.subject, a.channels]) ===
  JSON.stringify([b.types, b.source, b.subject, b.channels]);

/** A user's own subscriptions (`/me/subscriptions`, user tokens): follow event types, a source or a subject. */
export async function subscriptionsRoutes(app: App, deps: Deps): Promise<void> {
  const user = deps.auth.require('user');
  const db = deps.store.db;

  app.get(
    '/me/subscriptions',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'What I follow',
        description: DESCRIPTION,
        response: { 200: Type.Object({ subscriptions: Type.Array(SubscriptionShape) }) },
      },
    },
    async (request) => ({
      subscriptions: (await listSubscriptions(db, me(request.principal))).map(present),
    }),
  );

  app.post(
    '/me/subscriptions',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: `Follow event types, a source or a subject (at most ${MAX_SUBSCRIPTIONS}); the same again is a no-op`,
        description: DESCRIPTION,
        body: SubscriptionBody,
        response: { 200: SubscriptionShape, 201: SubscriptionShape },
      },
    },
    async (request, reply) => {
      const userId = me(request.principal);
      const { types, source, subject, channels } = request.body;
      if (types === undefined && source === undefined && subject === undefined) {
        throw invalid('body', 'must name types, a source or a subject to follow');
      }
      const wanted = {
        userId,
        types: types === undefined ? null : [...new Set(types)].sort(),
        source: source ?? null,
        subject: subject ?? null,
        channels: [...new Set(channels ?? [])].filter((c) => c !== 'inapp').sort(),
      };
      const now = deps.clock.now();
      const { sub, created } = await db.transaction().execute(async (trx) => {
        if (wanted.source !== null && (await findSource(trx, wanted.source)) === undefined) {
          throw new HeraldError('unknown_reference', `Source "${wanted.source}" does not exist`, {
            extra: { unknown: { sources: [wanted.source] } },
          });
        }
        const mine = await listSubscriptions(trx, userId);
        const same = mine.find((s) => sameFollowing(s, wanted));
        if (same !== undefined) return { sub: same, created: false };
        if (mine.length >= MAX_SUBSCRIPTIONS) {
          throw new HeraldError(
            'conflict',
            `A user may follow at most ${MAX_SUBSCRIPTIONS} things; unfollow some first`,
          );
        }
        const sub: Subscription = { id: newId('sub', now), ...wanted, createdAt: now };
        await insertSubscription(trx, sub);
        await appendAudit(trx, {
          at: now,
          actor: `user:${userId}`,
          action: 'subscription.created',
          subject_type: 'subscription',
          subject_id: sub.id,
          data: present(sub),
        });
        return { sub, created: true };
      });
      reply.code(created ? 201 : 200);
      return present(sub);
    },
  );

  app.delete(
    '/me/subscriptions/:id',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'Unfollow',
        params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }),
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const userId = me(request.principal);
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteSubscription(trx, userId, id))) throw notFound('Subscription', id);
        await appendAudit(trx, {
          at: now,
          actor: `user:${userId}`,
          action: 'subscription.deleted',
          subject_type: 'subscription',
          subject_id: id,
        });
      });
      return reply.code(204).send(null);
    },
  );
}
