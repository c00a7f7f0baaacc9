import { type Insertable, sql, type Transaction } from 'kysely';
import { chunkEntries, chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type {
  Database,
  DeliveryRow,
  NotificationRow,
  NotificationState,
  NotificationsTable,
} from '../db/tables.ts';
import { newId } from '../ids.ts';

/** The title a notification of an event shows: the event's title, else its summary, else its type. */
export function eventTitle(event: { title: string | null; summary: string | null; type: string }): string {
  return event.title ?? event.summary ?? event.type;
}

/** What a new notification says; {@link newNotification} makes the rest of its row. */
export type NotificationContent = Pick<
  NotificationsTable,
  'event_id' | 'user_id' | 'source_id' | 'type' | 'severity' | 'title' | 'summary' | 'url'
> & {
  /** The channels it goes out on, `inapp` included. */
  channels: readonly string[];
};

/**
 * The row of a new, unread notification, with a new id. Its stream position `seq` is 0 until the writer
 * allocates one (`allocateSeq`) and sets it, unless it is given.
 */
export function newNotification(
  content: NotificationContent,
  now: number,
  seq = 0,
): Insertable<Database['notifications']> {
  return {
    id: newId('ntf', now),
    ...content,
    channels: JSON.stringify([...content.channels].sort()),
    state: 'unread',
    seq,
    created_seq: seq,
    created_at: now,
    updated_at: now,
    read_at: null,
    archived_at: null,
  };
}

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
    case 'resolved':
      return { state, resolved_at: now };
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
  for (const [i, chunk] of chunkEntries(ids)) {
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

/** Open (unread or read) notifications carrying one of these dedup keys, for deduplication. */
export async function findOpenByDedupKeys(
  db: Db,
  keys: readonly string[],
): Promise<Pick<NotificationRow, 'id' | 'user_id' | 'source_id' | 'dedup_key'>[]> {
  const rows: Pick<NotificationRow, 'id' | 'user_id' | 'source_id' | 'dedup_key'>[] = [];
  for (const chunk of chunks(keys)) {
    rows.push(
      ...(await db
        .selectFrom('notifications')
        .select(['id', 'user_id', 'source_id', 'dedup_key'])
        .where('dedup_key', 'in', chunk)
        // Resolved and archived ones are closed: a new occurrence is news again.
        .where('state', 'in', ['unread', 'read'])
        .orderBy('id')
        .execute()),
    );
  }
  return rows;
}

/** A later occurrence folded into an open notification by deduplication. */
export interface DedupUpdate {
  id: string;
  /** How many events this update stands for. */
  occurrences: number;
  event_id: string;
  type: string;
  severity: string;
  title: string;
  summary: string | null;
  url: string | null;
  data: string | null;
}

/**
 * Applies deduplicated occurrences. Each notification counts them and takes the latest event's type, title,
 * summary, link, severity and data (it shows the latest state: `paused`, then `recovered`). It becomes unread
 * again, since something new happened (also if it was archived after it was found open, so the occurrence is
 * not lost), and takes the stream position `firstSeq + i`, so open streams show it as `notification.updated`.
 * Returns the user ids whose inboxes changed.
 */
export async function applyDedupUpdates(
  trx: Transaction<Database>,
  updates: readonly DedupUpdate[],
  firstSeq: number,
  now: number,
): Promise<string[]> {
  const users = new Set<string>();
  const step = 100;
  for (const [i, chunk] of chunkEntries(updates, step)) {
    const pick = <T>(value: (u: DedupUpdate, j: number) => unknown) =>
      sql<T>`case ${sql.join(
        chunk.map((u, j) => sql`when id = ${u.id} then ${value(u, j)}`),
        sql` `,
      )} end`;
    const rows = await trx
      .updateTable('notifications')
      .set({
        occurrences: sql<number>`occurrences + ${pick<number>((u) => sql.lit(u.occurrences))}`,
        last_event_id: pick<string>((u) => u.event_id),
        type: pick<string>((u) => u.type),
        severity: pick<string>((u) => u.severity),
        title: pick<string>((u) => u.title),
        summary: pick<string | null>((u) => u.summary),
        url: pick<string | null>((u) => u.url),
        data: pick<string | null>((u) => u.data),
        seq: pick<number>((_u, j) => sql.lit(firstSeq + i + j)),
        state: 'unread',
        read_at: null,
        archived_at: null,
        updated_at: now,
      })
      .where(
        'id',
        'in',
        chunk.map((u) => u.id),
      )
      .returning('user_id')
      .execute();
    for (const row of rows) users.add(row.user_id);
  }
  return [...users];
}
