import { Type } from 'typebox';
import { appendAudit } from '../audit/audit.repo.ts';
import type { App, Deps } from '../deps.ts';
import { findGroup, groupsContaining } from '../directory/groups.repo.ts';
import { DirectoryId } from '../directory/users.schema.ts';
import { HeraldError, notFound } from '../errors.ts';
import type { Principal } from '../http/auth.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { security } from '../http/schemas.ts';
import { announceQueueItems } from './queues.live.ts';
import { MyQueue, presentQueueItem, QueueItem, QueueItemState } from './queues.present.ts';
import {
  changeQueueItem,
  findQueueItem,
  listQueueItems,
  type QueueAction,
  type QueueItemRow,
  queueCounts,
} from './queues.repo.ts';

const tags = ['queues'];
const QueueParams = Type.Object({ groupId: DirectoryId });
const ItemParams = Type.Object({ groupId: DirectoryId, id: Type.String({ minLength: 1, maxLength: 200 }) });
const ItemsQuery = Type.Object({
  state: Type.Optional(
    Type.Union([QueueItemState, Type.Literal('all')], { description: 'Which items; left out: all' }),
  ),
  ...PageQuery,
});

const me = (principal: Principal): string => (principal as Extract<Principal, { kind: 'user' }>).userId;

const PAST: Record<QueueAction, string> = { take: 'taken', release: 'released', done: 'done' };

/**
 * Shared queues: a member's view (`/me/queues/...`, user tokens only) and the admin's (`/groups/{id}/queue`).
 * A queue the caller does not belong to answers 404, like any other user's data, so ids cannot be probed.
 */
export async function queuesRoutes(app: App, deps: Deps): Promise<void> {
  const user = deps.auth.require('user');
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  /** The caller's queue groups (membership follows nesting). */
  const myQueues = async (userId: string) => {
    const groups = [...(await groupsContaining(db, userId))];
    if (groups.length === 0) return [];
    return db
      .selectFrom('groups')
      .select(['id', 'name'])
      .where('id', 'in', groups)
      .where('queue', '=', 1)
      .orderBy('id')
      .execute();
  };
  const assertMember = async (userId: string, groupId: string) => {
    const group = await findGroup(db, groupId);
    if (group?.queue !== 1 || !(await groupsContaining(db, userId)).has(groupId)) {
      throw notFound('Queue', groupId);
    }
  };

  app.get(
    '/me/queues',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'List the shared queues I belong to, with how many items are open and taken',
        response: { 200: Page(MyQueue) },
      },
    },
    async (request) => {
      const queues = await myQueues(me(request.principal));
      const counts = await queueCounts(
        db,
        queues.map((q) => q.id),
      );
      return {
        items: queues.map((q) => ({ id: q.id, name: q.name, open: 0, taken: 0, ...counts.get(q.id) })),
        next_cursor: null,
      };
    },
  );

  app.get(
    '/me/queues/:groupId/items',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: "List a queue's shared items, newest first, with who took each",
        params: QueueParams,
        querystring: ItemsQuery,
        response: { 200: Page(QueueItem) },
      },
    },
    async (request) => {
      const { groupId } = request.params;
      await assertMember(me(request.principal), groupId);
      return listItems(groupId, request.query);
    },
  );

  const actions: [QueueAction, string][] = [
    [
      'take',
      'Take a queue item: it is mine to handle, and every member sees that. Taking it again is harmless',
    ],
    ['release', 'Give back a queue item I took, so another member can take it'],
    ['done', 'Mark a queue item done (one nobody took, or one I took)'],
  ];
  for (const [action, summary] of actions) {
    app.post(
      `/me/queues/:groupId/items/:id/${action}`,
      {
        preHandler: user,
        schema: {
          tags,
          security,
          summary,
          description:
            'Every member with an open `GET /v1/me/stream` gets a `queue.updated` frame with the item. An item ' +
            'another member holds answers 409 `already_taken` with `taken_by`; a finished one answers 409 ' +
            '`conflict` (except `done`, which answers it as it is).',
          params: ItemParams,
          response: { 200: QueueItem },
        },
      },
      async (request) => {
        const userId = me(request.principal);
        const { groupId, id } = request.params;
        await assertMember(userId, groupId);
        const now = deps.clock.now();
        const item = await db.transaction().execute(async (trx) => {
          const changed = await changeQueueItem(trx, { groupId, id }, action, userId, now);
          const row = await findQueueItem(trx, groupId, id);
          if (row === undefined) throw notFound('Queue item', id);
          if (!changed) refuse(row, action, userId);
          else {
            await appendAudit(trx, {
              at: now,
              actor: `user:${userId}`,
              action: `queue_item.${PAST[action]}`,
              subject_type: 'queue_item',
              subject_id: id,
              data: { group_id: groupId, event_id: row.event_id },
            });
          }
          return { row, changed };
        });
        if (item.changed) announceQueueItems(deps.store.notifier, [id]);
        return presentQueueItem(item.row);
      },
    );
  }

  app.get(
    '/groups/:groupId/queue',
    {
      preHandler: admin,
      schema: {
        tags: ['directory', ...tags],
        security,
        summary: "List a group's shared queue items, newest first, with their state and who took each",
        params: QueueParams,
        querystring: ItemsQuery,
        response: { 200: Page(QueueItem) },
      },
    },
    async (request) => {
      const { groupId } = request.params;
      if ((await findGroup(db, groupId)) === undefined) throw notFound('Group', groupId);
      return listItems(groupId, request.query);
    },
  );

  async function listItems(
    groupId: string,
    query: { state?: QueueItemRow['state'] | 'all'; limit?: number; cursor?: string },
  ) {
    const limit = query.limit ?? 50;
    const rows = await listQueueItems(db, groupId, {
      state: query.state,
      before: decodeCursor(query.cursor),
      limit: limit + 1,
    });
    return toPage(rows, limit, (r) => r.id, presentQueueItem);
  }
}

/**
 * Why an action changed nothing: idempotent repeats answer the item as it is; someone else holding it is
 * `already_taken`, naming them; anything else the state does not allow is `conflict`.
 */
function refuse(row: QueueItemRow, action: QueueAction, userId: string): void {
  const taker = row.taken_by === null ? null : { id: row.taken_by, name: row.taker_name ?? row.taken_by };
  const mine = row.taken_by === userId;
  if (action === 'take' && row.state === 'taken' && mine) return;
  if (action === 'release' && row.state === 'open') return;
  if (action === 'done' && row.state === 'done') return;
  if (row.state === 'taken' && !mine) {
    throw new HeraldError('already_taken', `Already taken by ${taker!.name} (${taker!.id})`, {
      extra: { taken_by: taker },
    });
  }
  throw new HeraldError(
    'conflict',
    `The item is ${row.state}${taker === null ? '' : ` (by ${taker.name})`}`,
    {
      extra: { state: row.state, taken_by: taker },
    },
  );
}
