import { sql, type Transaction } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { Database, DeliveryRow, NotificationRow, NotificationState } from '../db/tables.ts';

/*
 * Every query here is scoped to one user: the user id is part of each `where`, so a caller can never read or
 * change another person's inbox by guessing an id.
 */

export interface InboxFilter {
  /** One state, `all`, or undefined for everything but archived. */
  state: NotificationState | 'all' | undefined;
  /** Only notifications with an id below this (the page cursor; newest first). */
  before: string | undefined;
  limit: number;
}

/** One page of a user's inbox, newest first (ids sort by creation time); fetches `limit + 1` rows. */
export async function listNotifications(
  db: Db,
  userId: string,
  filter: InboxFilter,
): Promise<NotificationRow[]> {
  let query = db.selectFrom('notifications').selectAll().where('user_id', '=', userId);
  if (filter.state === undefined) query = query.where('state', '!=', 'archived');
  else if (filter.state !== 'all') query = query.where('state', '=', filter.state);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

export async function findNotification(
  db: Db,
  userId: string,
  id: string,
): Promise<NotificationRow | undefined> {
  return db
    .selectFrom('notifications')
    .selectAll()
    .where('user_id', '=', userId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function countUnread(db: Db, userId: string): Promise<number> {
  const row = await db
    .selectFrom('notifications')
    .select((eb) => eb.fn.countAll<number>().as('n'))
    .where('user_id', '=', userId)
    .where('state', '=', 'unread')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The columns a move to `state` sets; `read_at` survives archiving so "was it ever read" stays answerable. */
export function stateChange(row: Pick<NotificationRow, 'read_at'>, state: NotificationState, now: number) {
  switch (state) {
    case 'unread':
      return { state, read_at: null, archived_at: null };
    case 'read':
      return { state, read_at: row.read_at ?? now, archived_at: null };
    case 'archived':
      return { state, archived_at: now };
  }
}

/** Moves one notification to `state` with the stream position `seq`; returns the updated row. */
export async function updateState(
  trx: Transaction<Database>,
  row: NotificationRow,
  state: NotificationState,
  seq: number,
  now: number,
): Promise<NotificationRow | undefined> {
  return trx
    .updateTable('notifications')
    .set({ ...stateChange(row, state, now), seq, updated_at: now })
    .where('user_id', '=', row.user_id)
    .where('id', '=', row.id)
    .returningAll()
    .executeTakeFirst();
}

/** Ids of a user's unread notifications, oldest first. */
export async function unreadIds(db: Db, userId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('notifications')
    .select('id')
    .where('user_id', '=', userId)
    .where('state', '=', 'unread')
    .orderBy('id')
    .execute();
  return rows.map((r) => r.id);
}

// Two bound values per id keeps each statement far inside SQLite's 32,766 and PostgreSQL's 65,535 limits.
const CHUNK = 500;

/**
 * Marks the given notifications read, giving the i-th id the stream position `firstSeq + i` so every change
 * keeps a position of its own (a client resuming mid-batch misses nothing). Rows no longer unread are left
 * alone. Returns the ids that changed.
 */
export async function markRead(
  trx: Transaction<Database>,
  userId: string,
  ids: string[],
  firstSeq: number,
  now: number,
): Promise<string[]> {
  const changed: string[] = [];
  for (let i = 0; i < ids.length; i += CHUNK) {
    const chunk = ids.slice(i, i + CHUNK);
    // Sequence numbers go in as literals: PostgreSQL would type untyped CASE parameters as text.
    const seq = sql<number>`case ${sql.join(
      chunk.map((id, j) => sql`when id = ${id} then ${sql.lit(firstSeq + i + j)}`),
      sql` `,
    )} end`;
    const rows = await trx
      .updateTable('notifications')
      .set({ state: 'read', read_at: now, updated_at: now, seq })
      .where('user_id', '=', userId)
      .where('state', '=', 'unread')
      .where('id', 'in', chunk)
      .returning('id')
      .execute();
    changed.push(...rows.map((r) => r.id));
  }
  return changed;
}

/** A user's changes after stream position `afterSeq`, in stream order. */
export async function changesSince(
  db: Db,
  userId: string,
  afterSeq: number,
  limit: number,
): Promise<NotificationRow[]> {
  return db
    .selectFrom('notifications')
    .selectAll()
    .where('user_id', '=', userId)
    .where('seq', '>', afterSeq)
    .orderBy('seq')
    .limit(limit)
    .execute();
}

/** The user's latest stream position (0 for an empty inbox). */
export async function latestSeq(db: Db, userId: string): Promise<number> {
  const row = await db
    .selectFrom('notifications')
    .select((eb) => eb.fn.max('seq').as('seq'))
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row?.seq == null ? 0 : Number(row.seq);
}

/** The channel deliveries (email, push, sms) of one of the user's notifications, in creation order. */
export async function deliveriesOfNotification(
  db: Db,
  userId: string,
  notificationId: string,
): Promise<DeliveryRow[]> {
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where('user_id', '=', userId)
    .where('notification_id', '=', notificationId)
    .orderBy('id')
    .execute();
}
