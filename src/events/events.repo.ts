import { writeInChunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow, NewEvent } from '../db/tables.ts';

/** Inserts events, skipping any whose (source, id) or (source, Idempotency-Key) exists; returns the ids inserted. */
export async function insertEvents(db: Db, rows: NewEvent[]): Promise<Set<string>> {
  const { rows: inserted } = await writeInChunks(db, rows, (chunk) =>
    db
      .insertInto('events')
      .values(chunk)
      .onConflict((oc) => oc.doNothing())
      .returning('id'),
  );
  return new Set(inserted.map((row) => row.id));
}

type Existing = Pick<EventRow, 'id' | 'external_id' | 'idempotency_key' | 'body_hash' | 'status'>;

/**
 * The events of one source with any of these source ids or idempotency keys. One query per unique index: asked
 * with an OR, an engine may search by the source alone and read every event it ever sent.
 */
export async function findExisting(
  db: Db,
  sourceId: string,
  externalIds: string[],
  idempotencyKeys: string[],
): Promise<Existing[]> {
  const found = new Map<string, Existing>();
  for (const [column, values] of [
    ['external_id', externalIds],
    ['idempotency_key', idempotencyKeys],
  ] as const) {
    if (values.length === 0) continue;
    const rows = await db
      .selectFrom('events')
      .select(['id', 'external_id', 'idempotency_key', 'body_hash', 'status'])
      .where('source_id', '=', sourceId)
      .where(column, 'in', values)
      .execute();
    for (const row of rows) found.set(row.id, row);
  }
  return [...found.values()];
}

/** The events with these ids (missing ones are left out). */
export async function findEvents(db: Db, ids: readonly string[]): Promise<EventRow[]> {
  if (ids.length === 0) return [];
  return db
    .selectFrom('events')
    .selectAll()
    .where('id', 'in', [...ids])
    .execute();
}

export async function findEvent(db: Db, id: string): Promise<EventRow | undefined> {
  return db.selectFrom('events').selectAll().where('id', '=', id).executeTakeFirst();
}

export interface EventFilter {
  sourceId?: string;
  type?: string;
  status?: 'pending' | 'routed';
  /** Events with an id below this (the page cursor; newest first). */
  before?: string;
  limit: number;
}

export async function listEvents(db: Db, filter: EventFilter): Promise<EventRow[]> {
  let query = db.selectFrom('events').selectAll();
  if (filter.sourceId !== undefined) query = query.where('source_id', '=', filter.sourceId);
  if (filter.type !== undefined) query = query.where('type', '=', filter.type);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

/** The notifications an event produced, for `GET /v1/events/{id}`. */
export async function notificationsOfEvent(db: Db, eventId: string) {
  return db
    .selectFrom('notifications')
    .select([
      'id',
      'user_id',
      'state',
      'channels',
      'created_at',
      'updated_at',
      'read_at',
      'resolved_at',
      'resolved_by',
    ])
    .where('event_id', '=', eventId)
    .orderBy('user_id')
    .limit(1000)
    .execute();
}

/** The routing decision recorded for an event (the data of its latest `event.routed` audit entry), if routed. */
export async function routingDecision(db: Db, eventId: string): Promise<unknown> {
  const row = await db
    .selectFrom('audit_log')
    .select('data')
    .where('subject_type', '=', 'event')
    .where('subject_id', '=', eventId)
    .where('action', '=', 'event.routed')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.data ? JSON.parse(row.data) : null;
}
