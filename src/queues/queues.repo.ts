import { type Insertable, type Selectable, sql } from 'kysely';
import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { Database, EventRow, QueueItemState, QueueItemsTable } from '../db/tables.ts';
import { queueGroupIds } from '../directory/groups.repo.ts';
import { sha256 } from '../ids.ts';
import { eventTitle } from '../notifications/notifications.repo.ts';
import { closedAtRouting } from '../routing/closed.ts';
import type { EventDecision } from '../routing/decision.ts';

/** A queue item with the name of whoever took it. */
export type QueueItemRow = Selectable<QueueItemsTable> & { taker_name: string | null };

// Thirteen bound values per row; well inside SQLite's 32,766.
const INSERT_CHUNK = 1000;

/**
 * The id of an event's item in a queue. It is derived, not drawn, so the routing decision can name the item
 * before it is written, and a batch routed twice (a lease that ran out) finds the same item. Ids sort by the
 * event's arrival, so "newest first" is by event.
 */
export function queueItemId(eventId: string, groupId: string): string {
  return `qit_${eventId.replace(/^evt_/, '')}_${sha256(groupId).slice(0, 12)}`;
}

/** Writes one item per (event, queue) the batch's decisions reach; returns the ids of every such item. */
export async function createQueueItems(
  db: Db,
  decisions: ReadonlyMap<string, EventDecision>,
  now: number,
): Promise<string[]> {
  const rows: Insertable<Database['queue_items']>[] = [];
  for (const { event, queues } of decisions.values()) {
    // Closed for good by its source before routing: nothing left to take (src/routing/closed.ts).
    if (closedAtRouting(event)?.notified === false) continue;
    for (const queue of queues) rows.push(itemRow(event, queue.groupId, now));
  }
  return insertItems(db, rows);
}

/**
 * For an escalation level naming groups: puts the event's item in front of each queue among `groupIds`, as
 * routing to it would. A queue without one gets a new item; an item already there (routed, or raised by an
 * earlier level) takes the new `title` and, if a member marked it done while the event stayed unanswered,
 * opens again for anyone to take; one a member holds stays theirs. Returns the queues (so the caller reaches
 * only the other groups' members) and their items, to announce after the commit.
 */
export async function raiseQueueItems(
  db: Db,
  event: EventRow,
  groupIds: readonly string[],
  title: string,
  now: number,
): Promise<{ queues: Set<string>; items: { group_id: string; item_id: string }[] }> {
  const queues = groupIds.length === 0 ? new Set<string>() : await queueGroupIds(db, groupIds);
  const rows = [...queues].sort().map((groupId) => ({ ...itemRow(event, groupId, now), title }));
  if (rows.length === 0) return { queues, items: [] };
  // In an upsert's SET, `queue_items.<column>` is the row as it was (both engines).
  const reopen = sql`queue_items.state = 'done'`;
  await db
    .insertInto('queue_items')
    .values(rows)
    .onConflict((oc) =>
      oc.column('id').doUpdateSet({
        title,
        state: sql<QueueItemState>`case when ${reopen} then 'open' else queue_items.state end`,
        taken_by: sql<string | null>`case when ${reopen} then null else queue_items.taken_by end`,
        taken_at: sql<number | null>`case when ${reopen} then null else queue_items.taken_at end`,
        updated_at: now,
      }),
    )
    .execute();
  return { queues, items: rows.map((r) => ({ group_id: r.group_id, item_id: r.id })) };
}

function itemRow(event: EventRow, groupId: string, now: number): Insertable<Database['queue_items']> {
  return {
    id: queueItemId(event.id, groupId),
    event_id: event.id,
    group_id: groupId,
    title: eventTitle(event),
    summary: event.summary,
    url: event.url,
    severity: event.severity,
    type: event.type,
    state: 'open',
    taken_by: null,
    taken_at: null,
    created_at: now,
    updated_at: now,
  };
}

async function insertItems(db: Db, rows: Insertable<Database['queue_items']>[]): Promise<string[]> {
  for (const chunk of chunks(rows, INSERT_CHUNK)) {
    await db
      .insertInto('queue_items')
      .values(chunk)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
  return rows.map((r) => r.id);
}

function items(db: Db) {
  return db
    .selectFrom('queue_items')
    .leftJoin('users', 'users.id', 'queue_items.taken_by')
    .selectAll('queue_items')
    .select('users.name as taker_name');
}

export async function findQueueItem(db: Db, groupId: string, id: string): Promise<QueueItemRow | undefined> {
  return items(db)
    .where('queue_items.id', '=', id)
    .where('queue_items.group_id', '=', groupId)
    .executeTakeFirst();
}

/** Items by id, for stream frames. */
export async function queueItemsByIds(db: Db, ids: readonly string[]): Promise<QueueItemRow[]> {
  const out: QueueItemRow[] = [];
  const unique = [...new Set(ids)];
  for (const chunk of chunks(unique)) {
    out.push(...(await items(db).where('queue_items.id', 'in', chunk).execute()));
  }
  return out;
}

/** A queue's items, newest first, before the cursor `before`; at most `limit`. */
export async function listQueueItems(
  db: Db,
  groupId: string,
  filter: { state: QueueItemState | 'all' | undefined; before: string | undefined; limit: number },
): Promise<QueueItemRow[]> {
  let query = items(db).where('queue_items.group_id', '=', groupId);
  if (filter.state !== undefined && filter.state !== 'all')
    query = query.where('queue_items.state', '=', filter.state);
  if (filter.before !== undefined) query = query.where('queue_items.id', '<', filter.before);
  return query.orderBy('queue_items.id', 'desc').limit(filter.limit).execute();
}

/** How many items of each queue are open and taken. */
export async function queueCounts(
  db: Db,
  groupIds: readonly string[],
): Promise<Map<string, { open: number; taken: number }>> {
  const out = new Map<string, { open: number; taken: number }>();
  for (const chunk of chunks(groupIds)) {
    const rows = await db
      .selectFrom('queue_items')
      .select(['group_id', 'state', (eb) => eb.fn.countAll<number | string>().as('n')])
      .where('group_id', 'in', chunk)
      .where('state', 'in', ['open', 'taken'])
      .groupBy(['group_id', 'state'])
      .execute();
    for (const row of rows) {
      const counts = out.get(row.group_id) ?? { open: 0, taken: 0 };
      // PostgreSQL answers count(*) as a bigint string.
      counts[row.state as 'open' | 'taken'] = Number(row.n);
      out.set(row.group_id, counts);
    }
  }
  return out;
}

/** What a member asks of an item. */
export type QueueAction = 'take' | 'release' | 'done';

/**
 * Applies `action` by `userId` if the item's state allows it, in one conditional update so two members
 * racing for one item cannot both win; returns whether it changed anything.
 */
export async function changeQueueItem(
  db: Db,
  item: { groupId: string; id: string },
  action: QueueAction,
  userId: string,
  now: number,
): Promise<boolean> {
  const base = db.updateTable('queue_items').where('id', '=', item.id).where('group_id', '=', item.groupId);
  const query =
    action === 'take'
      ? base
          .set({ state: 'taken', taken_by: userId, taken_at: now, updated_at: now })
          .where('state', '=', 'open')
      : action === 'release'
        ? base
            .set({ state: 'open', taken_by: null, taken_at: null, updated_at: now })
            .where('state', '=', 'taken')
            .where('taken_by', '=', userId)
        : base
            .set({
              state: 'done',
              taken_by: userId,
              taken_at: sql<number>`coalesce(taken_at, ${now})`,
              updated_at: now,
            })
            .where((eb) =>
              eb.or([
                eb('state', '=', 'open'),
                eb.and([eb('state', '=', 'taken'), eb('taken_by', '=', userId)]),
              ]),
            );
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/**
 * Marks every unfinished queue item of these events done: their source closed them, or a recipient's answer
 * did (`handledBy`, who then shows as having handled each item). Returns the ids changed.
 */
export async function finishQueueItemsOfEvents(
  db: Db,
  eventIds: readonly string[],
  now: number,
  handledBy?: string,
): Promise<string[]> {
  if (eventIds.length === 0) return [];
  const rows = await db
    .updateTable('queue_items')
    .set({ state: 'done', updated_at: now })
    .$if(handledBy !== undefined, (qb) =>
      qb.set({
        taken_by: handledBy!,
        taken_at: sql<number>`case when taken_by = ${handledBy!} then taken_at else ${now} end`,
      }),
    )
    .where('event_id', 'in', [...eventIds])
    .where('state', '!=', 'done')
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}
