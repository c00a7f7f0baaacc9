import { createHash } from 'node:crypto';
import type { Insertable, Transaction, Updateable } from 'kysely';
import type { Db, Store } from '../db/engine.ts';
import type {
  AnnouncementRow,
  AnnouncementStatus,
  AnnouncementsTable,
  Database,
  NewEvent,
} from '../db/tables.ts';
import { HERALD_SOURCE } from '../ops/alerts.ts';

/** The event type of every announcement's event and notifications. */
export const ANNOUNCEMENT_TYPE = 'herald.announcement';

/** Statuses in which an announcement is (or will be) in inboxes, and can still be cancelled or expire. */
export const LIVE: readonly AnnouncementStatus[] = ['scheduled', 'publishing', 'published'];

export async function insertAnnouncement(db: Db, row: Insertable<AnnouncementsTable>): Promise<void> {
  await db.insertInto('announcements').values(row).execute();
}

export async function findAnnouncement(db: Db, id: string): Promise<AnnouncementRow | undefined> {
  return db.selectFrom('announcements').selectAll().where('id', '=', id).executeTakeFirst();
}

/** One page of announcements, newest first (ids sort by creation time); fetches `limit + 1` rows. */
export async function listAnnouncements(
  db: Db,
  filter: { status: AnnouncementStatus | undefined; before: string | undefined; limit: number },
): Promise<AnnouncementRow[]> {
  let query = db.selectFrom('announcements').selectAll();
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

/** Applies `changes` to an announcement; returns the updated row. */
export async function updateAnnouncement(
  db: Db,
  id: string,
  changes: Updateable<AnnouncementsTable>,
): Promise<AnnouncementRow | undefined> {
  return db.updateTable('announcements').set(changes).where('id', '=', id).returningAll().executeTakeFirst();
}

/**
 * Claims the announcement whose work is due first, inside `trx`: on PostgreSQL its row stays locked until
 * `trx` commits and other nodes skip it; the lease keeps it from other claims as the router's does.
 */
export async function claimDue(
  store: Store,
  trx: Transaction<Database>,
  now: number,
  leaseUntil: number,
): Promise<AnnouncementRow | undefined> {
  const due = store.lockForClaim(
    trx
      .selectFrom('announcements')
      .select('id')
      .where('due_at', '<=', now)
      .where('locked_until', '<=', now)
      .orderBy('due_at')
      .limit(1),
  );
  return trx
    .updateTable('announcements')
    .set({ locked_until: leaseUntil })
    .where('id', 'in', due)
    .returningAll()
    .executeTakeFirst();
}

/** When the publisher next has work (the earliest `due_at`), if ever. */
export async function nextDue(db: Db): Promise<number | undefined> {
  const row = await db
    .selectFrom('announcements')
    .select((eb) => eb.fn.min('due_at').as('due'))
    .where('due_at', 'is not', null)
    .executeTakeFirst();
  return row?.due == null ? undefined : Number(row.due);
}

/**
 * Takes up to `limit` of an announcement's notifications, for users after `after`, out of inboxes: they are
 * archived with the stream position `seq`, so open streams see the change and the inbox no longer lists
 * them. Returns the user id to continue after (undefined once none is left) and the users whose inbox changed.
 */
export async function withdrawNotifications(
  trx: Transaction<Database>,
  eventId: string,
  after: string | null,
  limit: number,
  allocateSeq: () => Promise<number>,
  now: number,
): Promise<{ next: string | undefined; changed: string[] }> {
  let page = trx.selectFrom('notifications').select('user_id').where('event_id', '=', eventId);
  if (after !== null) page = page.where('user_id', '>', after);
  const rows = await page
    .orderBy('user_id')
    .limit(limit + 1)
    .execute();
  const last = rows.slice(0, limit).at(-1)?.user_id;
  if (last === undefined) return { next: undefined, changed: [] };
  // Each user holds one notification of the event, so one position serves the whole page.
  const seq = await allocateSeq();
  let update = trx
    .updateTable('notifications')
    .set({ state: 'archived', archived_at: now, updated_at: now, seq })
    .where('event_id', '=', eventId)
    .where('user_id', '<=', last)
    .where('state', '!=', 'archived');
  if (after !== null) update = update.where('user_id', '>', after);
  const changed = await update.returning('user_id').execute();
  return { next: rows.length > limit ? last : undefined, changed: changed.map((r) => r.user_id) };
}

/**
 * The `herald.announcement` event an announcement's notifications belong to. It is stored already routed:
 * the publisher, not the router, decides who receives it.
 */
export function announcementEvent(
  announcement: Pick<
    AnnouncementRow,
    'id' | 'event_id' | 'title' | 'body' | 'url' | 'severity' | 'publish_at' | 'audience'
  >,
  now: number,
): NewEvent {
  const data = { announcement_id: announcement.id, audience: JSON.parse(announcement.audience) as unknown };
  return {
    id: announcement.event_id,
    source_id: HERALD_SOURCE,
    external_id: announcement.id,
    idempotency_key: null,
    body_hash: createHash('sha256')
      .update(JSON.stringify([ANNOUNCEMENT_TYPE, announcement.title, announcement.body, data]))
      .digest('hex'),
    format: 'native',
    type: ANNOUNCEMENT_TYPE,
    subject: `announcement/${announcement.id}`,
    time: announcement.publish_at,
    severity: announcement.severity,
    title: announcement.title,
    summary: announcement.body,
    url: announcement.url,
    due_at: null,
    recipients: null,
    actions: null,
    dedup_key: null,
    data: JSON.stringify(data),
    extensions: null,
    status: 'routed',
    received_at: now,
    routed_at: null,
    locked_until: 0,
  };
}
