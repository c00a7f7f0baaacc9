import { type Insertable, sql, type Transaction } from 'kysely';
import { chunks, insertInChunks } from '../db/bulk.ts';
import type { Db, Store } from '../db/engine.ts';
import type { Database, EventRow } from '../db/tables.ts';

// A literal, not a bound parameter: only then can SQLite use the partial index `events_pending`.
const PENDING = sql.lit<'pending'>('pending');

/** A routing pass's batch, and the lease it holds it under (see {@link claimEvents}). */
export interface Claim {
  events: EventRow[];
  lease: number;
}

/**
 * Takes up to `limit` events waiting to be routed, oldest first, for one routing pass.
 *
 * On PostgreSQL many nodes route at once, so the batch is claimed with the lease `leaseUntil`, which keeps other
 * claims off it while it is decided: one statement, whose inner select skips rows another node is claiming at
 * the same moment. An embedded SQLite file has one Herald process and so one router (see db/leases.ts): there
 * the claim is a read, which needs no write turn, and the lease is 0. Either way {@link markRouted} routes only
 * events still pending under the claim's lease, so no event is ever routed twice.
 */
export async function claimEvents(
  store: Store,
  now: number,
  leaseUntil: number,
  limit: number,
): Promise<Claim> {
  const { db } = store;
  const due = db
    .selectFrom('events')
    .where('status', '=', PENDING)
    .where('locked_until', '<=', now)
    .orderBy('id')
    .limit(limit);
  if (store.engine === 'sqlite') return { events: await due.selectAll().execute(), lease: 0 };
  const rows = await db
    .updateTable('events')
    .set({ locked_until: leaseUntil })
    .where('id', 'in', store.lockForClaim(due.select('id')))
    .returningAll()
    .execute();
  return { events: rows.sort((a, b) => (a.id < b.id ? -1 : 1)), lease: leaseUntil };
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

/**
 * Marks claimed events routed (their decisions are in the audit log, `event.routed`): those still pending under
 * the lease `lease` and still closed or open as they were when claimed (`claimed`); returns their ids. An event
 * taken by another claim after the lease ran out is that claim's to route. One its source closed meanwhile was
 * decided on a stale state: it is given back, to be decided afresh by the next pass.
 */
export async function markRouted(
  trx: Transaction<Database>,
  claimed: readonly EventRow[],
  lease: number,
  now: number,
): Promise<Set<string>> {
  const routed = new Set<string>();
  for (const [resolution, events] of Map.groupBy(claimed, (e) => e.resolution)) {
    for (const chunk of chunks(events, CHUNK)) {
      const rows = await trx
        .updateTable('events')
        .set({ status: 'routed', routed_at: now, locked_until: 0 })
        .where(
          'id',
          'in',
          chunk.map((e) => e.id),
        )
        .where('status', '=', PENDING)
        .where('locked_until', '=', lease)
        .where('resolution', resolution === null ? 'is' : '=', resolution)
        .returning('id')
        .execute();
      for (const row of rows) routed.add(row.id);
    }
  }
  const stale = claimed.filter((e) => !routed.has(e.id)).map((e) => e.id);
  for (const chunk of chunks(stale, CHUNK)) {
    await trx
      .updateTable('events')
      .set({ locked_until: 0 })
      .where('id', 'in', chunk)
      .where('status', '=', PENDING)
      .where('locked_until', '=', lease)
      .execute();
  }
  return routed;
}
