import { Type } from 'typebox';
import { actionViews } from '../actions/view.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, notFound } from '../errors.ts';
import type { Principal } from '../http/auth.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { security } from '../http/schemas.ts';
import {
  Notification,
  NotificationWithDeliveries,
  presentChannelStatus,
  presentNotification,
  State,
} from './notifications.present.ts';
import {
  countUnread,
  deliveriesOfNotification,
  findNotification,
  listNotifications,
} from './notifications.repo.ts';
import { changeState, markAllRead } from './notifications.service.ts';
import { credentialsOf, startingPosition, streamAuth } from './stream.ts';

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });
const tags = ['inbox'];

/** The user id of a request that passed `auth.require('user')`. */
const me = (principal: Principal): string => (principal as Extract<Principal, { kind: 'user' }>).userId;

/**
 * A user's own inbox (`/me/...`, user tokens only). Every query is scoped to the caller, and another user's
 * notification answers 404, never 403, so ids cannot be probed.
 */
export async function inboxRoutes(app: App, deps: Deps): Promise<void> {
  const preHandler = deps.auth.require('user');

  app.get(
    '/me/notifications',
    {
      preHandler,
      schema: {
        tags,
        security,
        summary: 'List my notifications, newest first (archived ones only with state=archived or state=all)',
        querystring: Type.Object({
          state: Type.Optional(Type.Union([State, Type.Literal('all')])),
          ...PageQuery,
        }),
        response: { 200: Page(Notification) },
      },
    },
    async (request) => {
      const { state, limit = 50, cursor } = request.query;
      const filter = { state, before: decodeCursor(cursor), limit };
      const rows = await listNotifications(deps.store.db, me(request.principal), filter);
      const views = await actionViews(deps.store.db, rows.slice(0, limit));
      return toPage(
        rows,
        limit,
        (row) => row.id,
        (row) => ({
          ...presentNotification(row),
          ...views.get(row.id),
        }),
      );
    },
  );

  app.get(
    '/me/notifications/unread-count',
    {
      preHandler,
      schema: {
        tags,
        security,
        summary: 'Count my unread notifications',
        response: { 200: Type.Object({ unread: Type.Integer() }) },
      },
    },
    async (request) => ({ unread: await countUnread(deps.store.db, me(request.principal)) }),
  );

  app.post(
    '/me/notifications/read-all',
    {
      preHandler,
      schema: {
        tags,
        security,
        summary: 'Mark all my unread notifications read',
        // No options: a body, if any, is `{}`, so that an option sent in the hope it exists is not ignored.
        body: Type.Union([Type.Object({}, { additionalProperties: false }), Type.Null()]),
        response: { 200: Type.Object({ updated: Type.Integer() }) },
      },
    },
    async (request) => ({ updated: await markAllRead(deps, me(request.principal)) }),
  );

  app.get(
    '/me/notifications/:id',
    {
      preHandler,
      schema: {
        tags,
        security,
        summary: 'Get one of my notifications, with how it went on each channel',
        params: IdParams,
        response: { 200: NotificationWithDeliveries },
      },
    },
    async (request) => {
      const row = await findNotification(deps.store.db, me(request.principal), request.params.id);
      if (row === undefined) throw notFound('Notification', request.params.id);
      const [deliveries, views] = await Promise.all([
        deliveriesOfNotification(deps.store.db, row.user_id, row.id),
        actionViews(deps.store.db, [row]),
      ]);
      return {
        ...presentNotification(row),
        ...views.get(row.id),
        deliveries: deliveries.map(presentChannelStatus),
      };
    },
  );

  app.patch(
    '/me/notifications/:id',
    {
      preHandler,
      schema: {
        tags,
        security,
        summary: 'Mark one of my notifications read, unread or archived',
        params: IdParams,
        body: Type.Object({ state: State }, { additionalProperties: false }),
        response: { 200: Notification },
      },
    },
    async (request) => {
      const row = await changeState(deps, me(request.principal), request.params.id, request.body.state);
      return presentNotification(row);
    },
  );

  app.get(
    '/me/stream',
    {
      preHandler: streamAuth(deps),
      schema: {
        tags,
        summary: 'My inbox in real time (Server-Sent Events)',
        description: [
          'A `text/event-stream` of `notification` frames (a notification new to this client) and',
          '`notification.updated` frames (a state change of one it has seen); `data` is the notification.',
          'Each frame `id` is a position in my inbox; reconnect with `Last-Event-ID` (or `?last_event_id=`)',
          'to receive everything after it first. A `: keep-alive` comment comes every 15 s.',
          'Members of shared queues also get `queue.updated` frames (`data` is the queue item) when an item is',
          'created, taken, released or done; they have no `id`, are not replayed, and leave Last-Event-ID alone.',
          "Browsers' EventSource cannot set headers, so the user token may also be sent as `?access_token=`",
          '(kept out of logs); prefer the `Authorization` header everywhere else.',
        ].join(' '),
        security,
        querystring: Type.Object({
          access_token: Type.Optional(Type.String({ maxLength: 200 })),
          last_event_id: Type.Optional(Type.String({ maxLength: 20 })),
        }),
        headers: Type.Object({ 'last-event-id': Type.Optional(Type.String({ maxLength: 20 })) }),
        response: {
          200: {
            description: 'The event stream; it stays open until the client leaves or Herald shuts down',
            content: { 'text/event-stream': { schema: Type.String() } },
          },
        },
      },
    },
    async (request, reply) => {
      const userId = me(request.principal);
      if (deps.hub.full())
        throw new HeraldError('unavailable', 'This node holds all the streams it can; retry');
      const position = await startingPosition(deps, request, userId);
      const credentials = credentialsOf(request);
      const authorised = async () => {
        const principal = await deps.auth.identify(credentials);
        return principal?.kind === 'user' && principal.userId === userId;
      };
      reply.hijack();
      deps.hub.open(userId, reply.raw, position, authorised);
    },
  );
}
