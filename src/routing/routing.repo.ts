import { type Insertable, sql, type Transaction } from 'kysely';
import { insertInChunks } from '../db/bulk.ts';
import type { Db, Store } from '../db/engine.ts';
import type { Database, EventRow } from '../db/tables.ts';

// A literal, not a bound parameter: only then can SQLite use the partial index `events_pending`.
const PENDING = sql.lit<'pending'>('pending');

/**
 * Claims up to `limit` events waiting to be routed, inside the routing transaction `trx`: on PostgreSQL the
 * rows stay locked until it commits and other nodes skip them; the lease (`leaseUntil`) additionally keeps
 * them from other claims should a node hold them without its transaction (see releaseStaleLeases).
 */
export async function claimEvents(
  store: Store,
  trx: Transaction<Database>,
  now: number,
  leaseUntil: number,
  limit: number,
): Promise<EventRow[]> {
  const due = store.lockForClaim(
    trx
      .selectFrom('events')
      .select('id')
      .where('status', '=', PENDING)
      .where('locked_until', '<=', now)
      .orderBy('id')
      .limit(limit),
  );
  const rows = await trx
    .updateTable('events')
    .set({ locked_until: leaseUntil })
    .where('id', 'in', due)
    .returningAll()
    .execute();
  return rows.sort((a, b) => (a.id < b.id ? -1 : 1));
}

export async function enabledEndpoints(db: Db): Promise<{ id: string; kind: string; types: string[] }[]> {
  const rows = await db
    .selectFrom('endpoints')
    .select(['id', 'kind', 'types'])
    .where('status', '=', 'enabled')
    .execute();
  return rows.map((r) => ({ id: r.id, kind: r.kind, types: JSON.parse(r.types) as string[] }));
}

/** Inserts notifications, skipping any (event, user) pair that exists: one event never notifies a person twice. */
export function insertNotifications(
  trx: Transaction<Database>,
  rows: Insertable<Database['notifications']>[],
): Promise<number> {
  return insertInChunks(trx, rows, (chunk) =>
    trx
      .insertInto('notifications')
      .values(chunk)
      .onConflict((oc) => oc.columns(['event_id', 'user_id']).doNothing()),
  );
}

/** Inserts webhook deliveries, skipping any (event, endpoint) pair that exists. */
export async function insertDeliveries(
  trx: Transaction<Database>,
  rows: Insertable<Database['deliveries']>[],
): Promise<void> {
  await insertInChunks(trx, rows, (chunk) =>
    trx
      .insertInto('deliveries')
      .values(chunk)
      .onConflict((oc) => oc.columns(['event_id', 'endpoint_id']).doNothing()),
  );
}

// Keeps every statement inside SQLite's limit of 32,766 bound values.
const CHUNK = 1000;

/** Marks a batch of events routed (their decisions are in the audit log, `event.routed`). */
export async function markRouted(trx: Transaction<Database>, ids: string[], now: number): Promise<void> {
  for (let i = 0; i < ids.length; i += CHUNK) {
    await trx
      .updateTable('events')
      .set({ status: 'routed', routed_at: now, locked_until: 0 })
      .where('id', 'in', ids.slice(i, i + CHUNK))
      .execute();
  }
}
