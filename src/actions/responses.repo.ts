import { sql, type Transaction } from 'kysely';
import { chunkEntries } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { Database, EventRow, NotificationRow, ResponseRow } from '../db/tables.ts';

/**
 * Reads the event and takes its row lock (a write that changes nothing): responses to one event, and a source
 * closing it, run one after the other, so "first response wins" has exactly one winner. SQLite serialises
 * every write transaction anyway.
 */
export async function lockEvent(trx: Transaction<Database>, id: string): Promise<EventRow | undefined> {
  return trx
    .updateTable('events')
    .set({ locked_until: sql`locked_until` })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

export async function insertResponse(db: Db, row: ResponseRow): Promise<void> {
  await db.insertInto('responses').values(row).execute();
}

export async function responseOfNotification(
  db: Db,
  notificationId: string,
): Promise<ResponseRow | undefined> {
  return db
    .selectFrom('responses')
    .selectAll()
    .where('notification_id', '=', notificationId)
    .executeTakeFirst();
}

/** An event's responses, oldest first. */
export async function responsesOfEvent(db: Db, eventId: string): Promise<ResponseRow[]> {
  return db.selectFrom('responses').selectAll().where('event_id', '=', eventId).orderBy('id').execute();
}

/** The notifications of one event that are not resolved yet. */
export async function openNotificationsOfEvents(
  db: Db,
  eventIds: readonly string[],
): Promise<Pick<NotificationRow, 'id' | 'user_id'>[]> {
  if (eventIds.length === 0) return [];
  return db
    .selectFrom('notifications')
    .select(['id', 'user_id'])
    .where('event_id', 'in', [...eventIds])
    .where('resolved_at', 'is', null)
    .orderBy('id')
    .execute();
}

/** How many notifications of an event can respond to it: the count a response policy weighs responses against. */
export async function countNotificationsOfEvent(db: Db, eventId: string): Promise<number> {
  const row = await db
    .selectFrom('notifications')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('event_id', '=', eventId)
    .where('actionable', '=', 1)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** What resolving sets on a notification besides its stream position. */
export interface Resolution {
  response: string | null;
  resolvedBy: string;
}

/**
 * Resolves notifications, giving the i-th id the stream position `firstSeq + i` (open streams show each as
 * `notification.updated`). Archived ones keep their state and gain the resolution. Returns the user ids whose
 * inboxes changed.
 */
export async function resolveNotifications(
  trx: Transaction<Database>,
  ids: readonly string[],
  resolution: Resolution,
  firstSeq: number,
  now: number,
): Promise<string[]> {
  const users = new Set<string>();
  for (const [i, chunk] of chunkEntries(ids)) {
    const seq = sql<number>`case ${sql.join(
      chunk.map((id, j) => sql`when id = ${id} then ${sql.lit(firstSeq + i + j)}`),
      sql` `,
    )} end`;
    const rows = await trx
      .updateTable('notifications')
      .set({
        state: sql<'resolved'>`case when state = 'archived' then state else 'resolved' end`,
        response: resolution.response,
        resolved_by: resolution.resolvedBy,
        resolved_at: now,
        updated_at: now,
        seq,
      })
      .where('id', 'in', chunk)
      .returning('user_id')
      .execute();
    for (const row of rows) users.add(row.user_id);
  }
  return [...users];
}

/** Events of one source by Herald id or by dedup key (every still-open event carrying it). */
export async function findSourceEvents(
  db: Db,
  sourceId: string,
  by: { id: string } | { dedupKey: string },
): Promise<EventRow[]> {
  let query = db.selectFrom('events').selectAll().where('source_id', '=', sourceId);
  query = 'id' in by ? query.where('id', '=', by.id) : query.where('dedup_key', '=', by.dedupKey);
  return query.orderBy('id').limit(1000).execute();
}

/** Closes an event: how, when and by whom. Only an open event changes; returns whether it did. */
export async function closeEvent(
  trx: Transaction<Database>,
  id: string,
  resolution: string,
  by: string,
  now: number,
): Promise<boolean> {
  const result = await trx
    .updateTable('events')
    .set({ resolution, resolved_at: now, resolved_by: by })
    .where('id', '=', id)
    .where('resolution', 'is', null)
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}
