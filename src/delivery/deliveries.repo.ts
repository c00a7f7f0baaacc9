import { type Insertable, type Selectable, sql } from 'kysely';
import { insertInChunks, writeInChunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { AttemptsTable, DeliveriesTable, DeliveryRow, DeliveryStatus } from '../db/tables.ts';
import { newId } from '../ids.ts';
import { presentEventDelivery } from './endpoints.present.ts';

export type AttemptRow = Selectable<AttemptsTable>;

// A literal, not a bound parameter: only then can SQLite use the partial index `deliveries_due`.
const PENDING = sql.lit<'pending'>('pending');

/*
 * A manual resend sets a finished delivery back to pending and leaves its completed_at alone: a pending delivery
 * with a completed_at is one an operator reopened, and its next attempt is recorded with trigger `manual`.
 * Every outcome clears or replaces completed_at, so the mark lasts exactly one attempt.
 */

/**
 * What a new delivery is for; {@link newDelivery} makes the rest of its row. `lane` is where it waits (see the
 * dispatcher): the endpoint, the user channel, or the write-back lane. Without an `id`, it gets a new one.
 */
export type DeliveryTarget = Pick<DeliveriesTable, 'event_id' | 'channel' | 'lane' | 'msg_id'> &
  Partial<Pick<DeliveriesTable, 'id' | 'endpoint_id' | 'notification_id' | 'user_id' | 'fallback'>>;

/** The row of a new delivery, pending and due now. */
export function newDelivery(target: DeliveryTarget, now: number): Insertable<DeliveriesTable> {
  return {
    id: target.id ?? newId('dlv', now),
    event_id: target.event_id,
    channel: target.channel,
    endpoint_id: target.endpoint_id ?? null,
    lane: target.lane,
    notification_id: target.notification_id ?? null,
    user_id: target.user_id ?? null,
    fallback: target.fallback ?? null,
    provider_id: null,
    msg_id: target.msg_id,
    status: 'pending',
    attempt_count: 0,
    next_attempt_at: now,
    locked_until: 0,
    last_status_code: null,
    last_error: null,
    created_at: now,
    updated_at: now,
    completed_at: null,
  };
}

/** Cancels the given pending deliveries (e.g. their endpoint is gone or disabled). */
export async function cancelDeliveries(
  db: Db,
  ids: readonly string[],
  reason: string,
  now: number,
): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('deliveries')
    .set({ status: 'cancelled', last_error: reason, locked_until: 0, updated_at: now, completed_at: now })
    .where('id', 'in', [...ids])
    .where('status', '=', 'pending')
    .execute();
}

/**
 * Cancels an endpoint's pending deliveries that no dispatcher holds right now; held ones are cancelled when
 * next claimed. Returns how many were cancelled.
 */
export async function cancelPendingForEndpoint(
  db: Db,
  endpointId: string,
  reason: string,
  now: number,
): Promise<number> {
  const result = await db
    .updateTable('deliveries')
    .set({ status: 'cancelled', last_error: reason, updated_at: now, completed_at: now })
    .where('endpoint_id', '=', endpointId)
    .where('status', '=', 'pending')
    .where('locked_until', '<=', now)
    .executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function insertAttempts(db: Db, rows: AttemptRow[]): Promise<void> {
  await insertInChunks(db, rows, (chunk) => db.insertInto('attempts').values(chunk));
}

/** The state a delivery is left in after an attempt. */
export interface DeliveryAfterAttempt {
  status: DeliveryStatus;
  attempt_count: number;
  next_attempt_at: number;
  last_status_code: number | null;
  last_error: string | null;
  updated_at: number;
  completed_at: number | null;
}

export interface FinishedAttempt extends DeliveryAfterAttempt {
  id: string;
  /** The `locked_until` the delivery was claimed with. */
  lease: number;
  provider_id: string | null;
}

/**
 * Records the state of many deliveries after their attempts, a chunk of rows per statement. A delivery is
 * updated only while it still carries the lease it was claimed with: when the lease ran out and another node
 * took the delivery, that node's outcome is the one that counts.
 */
export async function finishAttempts(db: Db, rows: FinishedAttempt[]): Promise<void> {
  // Each row's values in the order the statement binds them (see writeInChunks).
  const values = rows.map((r) => ({
    id: r.id,
    lease: r.lease,
    status: r.status,
    attempt_count: r.attempt_count,
    next_attempt_at: r.next_attempt_at,
    last_status_code: r.last_status_code,
    last_error: r.last_error,
    updated_at: r.updated_at,
    completed_at: r.completed_at,
    provider_id: r.provider_id,
  }));
  // `update ... from (values ...)` works on both engines (SQLite 3.33+); VALUES columns are column1, column2, ...
  // on both, and the casts give PostgreSQL the types its untyped parameters lack.
  await writeInChunks(db, values, (chunk) => {
    const list = chunk.map(
      (r) => sql`(${r.id}, cast(${r.lease} as bigint), ${r.status}, cast(${r.attempt_count} as integer),
        cast(${r.next_attempt_at} as bigint), cast(${r.last_status_code} as integer), ${r.last_error},
        cast(${r.updated_at} as bigint), cast(${r.completed_at} as bigint), ${r.provider_id})`,
    );
    const update = sql`
      update deliveries set status = v.column3, attempt_count = v.column4, next_attempt_at = v.column5,
        last_status_code = v.column6, last_error = v.column7, updated_at = v.column8, completed_at = v.column9,
        provider_id = coalesce(v.column10, deliveries.provider_id), locked_until = 0
      from (values ${sql.join(list)}) as v
      where deliveries.id = v.column1 and deliveries.locked_until = v.column2 and deliveries.status = 'pending'`;
    return { compile: () => update.compile(db) };
  });
}

export interface DeliveryFilter {
  endpointId: string;
  status?: DeliveryStatus | undefined;
  /** Deliveries with an id below this (the page cursor; newest first). */
  before?: string | undefined;
  limit: number;
}

/** An endpoint's deliveries, newest first. */
export async function listEndpointDeliveries(db: Db, filter: DeliveryFilter): Promise<DeliveryRow[]> {
  let query = db.selectFrom('deliveries').selectAll().where('endpoint_id', '=', filter.endpointId);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
}

export async function findDelivery(db: Db, endpointId: string, id: string): Promise<DeliveryRow | undefined> {
  return db
    .selectFrom('deliveries')
    .selectAll()
    .where('id', '=', id)
    .where('endpoint_id', '=', endpointId)
    .executeTakeFirst();
}

/** The attempts of these deliveries, oldest first, grouped by delivery id. */
export async function attemptsOf(db: Db, deliveryIds: readonly string[]): Promise<Map<string, AttemptRow[]>> {
  const byDelivery = new Map<string, AttemptRow[]>();
  if (deliveryIds.length === 0) return byDelivery;
  const rows = await db
    .selectFrom('attempts')
    .selectAll()
    .where('delivery_id', 'in', [...deliveryIds])
    .orderBy('id')
    .execute();
  for (const row of rows) {
    const list = byDelivery.get(row.delivery_id);
    if (list === undefined) byDelivery.set(row.delivery_id, [row]);
    else list.push(row);
  }
  return byDelivery;
}

/** Sets a finished delivery back to pending, due now (see the note on manual resends above). */
export async function reopenDelivery(db: Db, id: string, now: number): Promise<DeliveryRow | undefined> {
  return db
    .updateTable('deliveries')
    .set({ status: 'pending', next_attempt_at: now, locked_until: 0, updated_at: now })
    .where('id', '=', id)
    .where('status', '!=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

/** The deliveries of one event, as the events API shows them (schema `EventDelivery`). */
export async function listDeliveriesForEvent(db: Db, eventId: string) {
  const rows = await db
    .selectFrom('deliveries')
    .selectAll()
    .where('event_id', '=', eventId)
    .orderBy('id')
    .execute();
  return rows.map(presentEventDelivery);
}

/** Which deliveries an operator lists or replays. */
export interface DeliverySearch {
  status?: DeliveryStatus | undefined;
  channel?: string | undefined;
  endpointId?: string | undefined;
  userId?: string | undefined;
  /** Finished (or, for pending ones, last changed) at or after this. */
  since?: number | undefined;
  until?: number | undefined;
}

function searchDeliveries(db: Db, search: DeliverySearch) {
  let query = db.selectFrom('deliveries');
  // A literal (the status is one of four known words): only then can SQLite use the partial index `deliveries_dead`.
  if (search.status !== undefined) query = query.where('status', '=', sql.lit(search.status));
  if (search.channel !== undefined) query = query.where('channel', '=', search.channel);
  if (search.endpointId !== undefined) query = query.where('endpoint_id', '=', search.endpointId);
  if (search.userId !== undefined) query = query.where('user_id', '=', search.userId);
  if (search.since !== undefined) query = query.where('updated_at', '>=', search.since);
  if (search.until !== undefined) query = query.where('updated_at', '<', search.until);
  return query;
}

/** Deliveries matching `search`, newest first. */
export async function listDeliveries(
  db: Db,
  search: DeliverySearch & { before?: string | undefined; limit: number },
): Promise<DeliveryRow[]> {
  let query = searchDeliveries(db, search).selectAll();
  if (search.before !== undefined) query = query.where('id', '<', search.before);
  return query.orderBy('id', 'desc').limit(search.limit).execute();
}

export async function findAnyDelivery(db: Db, id: string): Promise<DeliveryRow | undefined> {
  return db.selectFrom('deliveries').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Reopens up to `limit` finished deliveries matching `search`, oldest first, for one more attempt each (recorded
 * as manual). Deliveries to disabled endpoints stay as they are: enable the endpoint first. Returns their ids.
 */
export async function replayDeliveries(
  db: Db,
  search: DeliverySearch,
  limit: number,
  now: number,
): Promise<string[]> {
  const chosen = searchDeliveries(db, search)
    .select('id')
    .where('status', '!=', PENDING)
    .where((eb) =>
      eb.or([
        eb('endpoint_id', 'is', null),
        eb('endpoint_id', 'in', eb.selectFrom('endpoints').select('id').where('status', '=', 'enabled')),
      ]),
    )
    .orderBy('id')
    .limit(limit);
  const rows = await db
    .updateTable('deliveries')
    .set({ status: 'pending', next_attempt_at: now, locked_until: 0, updated_at: now })
    .where('id', 'in', chosen)
    .where('status', '!=', 'pending')
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}
