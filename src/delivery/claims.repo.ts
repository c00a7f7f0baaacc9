import { type OperandExpression, sql } from 'kysely';
import type { Db, Store } from '../db/engine.ts';
import type { DeliveryRow } from '../db/tables.ts';

/*
 * How dispatchers take due deliveries: each claim sets a lease (`locked_until`) on the rows it takes, so no
 * other claim takes them until the lease runs out, and an outcome is recorded only under the lease it was
 * claimed with (finishAttempts in deliveries.repo.ts).
 */

// A literal, not a bound parameter: only then can SQLite use the partial index `deliveries_due`.
const PENDING = sql.lit<'pending'>('pending');
// Also a literal, so SQLite can use the partial index `deliveries_callback_lane`.
const CALLBACK = sql.lit<string>('callback');

export interface ClaimOptions {
  now: number;
  /** Most deliveries to claim in all. */
  limit: number;
  /** Most deliveries to claim for any one lane (endpoint, or user channel)... */
  perLane: number;
  /** ...or for these lanes, this many (what they have free). */
  roomFor: ReadonlyMap<string, number>;
  /** Lanes to leave alone (no free slot on this node, paused, or ordered: see claimOrderedHeads). */
  excludeLanes: readonly string[];
  /** The lease: until then no other claim takes these deliveries. */
  lockedUntil: number;
  /** How many due deliveries to look at to pick from (bounds the work of one claim). */
  scan: number;
}

/**
 * Claims due deliveries with a lease, in one statement. The innermost select goes through the engine's
 * `lockForClaim` (`for update skip locked` on PostgreSQL), so nodes sharing a database never claim the same row;
 * a window over it takes no more per lane than the lane has room for.
 */
export async function claimDueDeliveries(store: Store, options: ClaimOptions): Promise<DeliveryRow[]> {
  const { db } = store;
  let due = db
    .selectFrom('deliveries')
    .select(['id', 'lane', 'next_attempt_at'])
    .where('status', '=', PENDING)
    .where('next_attempt_at', '<=', options.now)
    .where('locked_until', '<=', options.now);
  if (options.excludeLanes.length > 0) due = due.where('lane', 'not in', [...options.excludeLanes]);
  // A write-back waits while an older one of its lane (its event) is pending: the source gets them in order.
  due = due.where((eb) =>
    eb.or([
      eb('channel', '!=', CALLBACK),
      eb.not(
        eb.exists(
          eb
            .selectFrom('deliveries as older')
            .select('older.id')
            .where('older.lane', '=', eb.ref('deliveries.lane'))
            .where('older.status', '=', PENDING)
            .where('older.channel', '=', CALLBACK)
            .where('older.id', '<', eb.ref('deliveries.id')),
        ),
      ),
    ]),
  );
  const candidates = store.lockForClaim(due.orderBy('next_attempt_at').limit(options.scan));
  const ranked = db
    .selectFrom(candidates.as('c'))
    .select([
      'c.id',
      'c.lane',
      'c.next_attempt_at',
      sql<number>`row_number() over (partition by c.lane order by c.next_attempt_at, c.id)`.as('rank'),
    ]);
  const room =
    options.roomFor.size === 0
      ? sql<number>`${options.perLane}`
      : sql<number>`case r.lane ${sql.join(
          [...options.roomFor].map(([id, n]) => sql`when ${id} then cast(${n} as integer)`),
          sql` `,
        )} else cast(${options.perLane} as integer) end`;
  const chosen = db
    .selectFrom(ranked.as('r'))
    .select('r.id')
    .where('r.rank', '<=', room)
    .orderBy('r.next_attempt_at')
    .limit(options.limit);
  return lease(db, chosen, options.now, options.lockedUntil).execute();
}

/**
 * Claims up to `limit` due deliveries of one lane, oldest first: the cheap claim for a lane a node is working
 * through (no window over other lanes' rows). Not for write-back lanes, whose order claimDueDeliveries keeps.
 */
export async function claimLaneDeliveries(
  store: Store,
  lane: string,
  limit: number,
  now: number,
  lockedUntil: number,
): Promise<DeliveryRow[]> {
  const { db } = store;
  const due = store.lockForClaim(
    db
      .selectFrom('deliveries')
      .select('id')
      .where('status', '=', PENDING)
      .where('lane', '=', lane)
      .where('next_attempt_at', '<=', now)
      .where('locked_until', '<=', now)
      .orderBy('next_attempt_at')
      .limit(limit),
  );
  return lease(db, due, now, lockedUntil).execute();
}

/**
 * Claims the oldest pending delivery of each ordered endpoint, when it is due: an ordered endpoint receives one
 * delivery at a time in creation order, and one waiting for a retry holds back those behind it.
 */
export async function claimOrderedHeads(
  store: Store,
  endpointIds: readonly string[],
  now: number,
  lockedUntil: number,
): Promise<DeliveryRow[]> {
  if (endpointIds.length === 0) return [];
  const { db } = store;
  const heads = db
    .selectFrom('deliveries')
    .select((eb) => eb.fn.min('id').as('id'))
    .where('status', '=', PENDING)
    .where('endpoint_id', 'in', [...endpointIds])
    .groupBy('endpoint_id');
  return lease(db, heads, now, lockedUntil).where('next_attempt_at', '<=', now).execute();
}

/**
 * Sets the lease on the deliveries `ids` selects that no other claim holds (their lease ran out by `now`) and
 * returns them: the write every claim ends with.
 */
function lease(db: Db, ids: OperandExpression<string>, now: number, lockedUntil: number) {
  return db
    .updateTable('deliveries')
    .set({ locked_until: lockedUntil })
    .where('id', 'in', ids)
    .where('locked_until', '<=', now)
    .returningAll();
}

/** When the earliest pending delivery after `now` falls due, if any. */
export async function nextDueAt(db: Db, now: number): Promise<number | undefined> {
  const row = await db
    .selectFrom('deliveries')
    .select('next_attempt_at')
    .where('status', '=', PENDING)
    .where('next_attempt_at', '>', now)
    .orderBy('next_attempt_at')
    .limit(1)
    .executeTakeFirst();
  return row?.next_attempt_at;
}

/** Gives claimed deliveries back unsent (still holding `lease`), so any node may take them at once. */
export async function releaseDeliveries(db: Db, ids: readonly string[], lease: number): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('deliveries')
    .set({ locked_until: 0 })
    .where('id', 'in', [...ids])
    .where('locked_until', '=', lease)
    .execute();
}
