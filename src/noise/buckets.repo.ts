import { type Insertable, type Selectable, sql, type Transaction } from 'kysely';
import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { Database, NoiseBucketKind, NoiseBucketsTable } from '../db/tables.ts';
import { newId } from '../ids.ts';

/*
 * Buckets hold notifications back (groups, throttle windows, digests). Attaching to a bucket is an upsert on
 * its `open_key` that takes the bucket's row lock, and a flush starts by updating the same row: so on
 * PostgreSQL a flush waits for routers attaching to the bucket to commit, and a router attaching after a
 * flush closed the bucket opens a new one. Nothing attached is ever missed by a flush.
 */

export type Bucket = Selectable<NoiseBucketsTable>;

/** A bucket to open, or to count `count` more against when one with its key is open. */
export interface BucketClaim {
  kind: NoiseBucketKind;
  openKey: string;
  ruleId: string | null;
  userId: string | null;
  label: string | null;
  count: number;
  /** When a bucket opened now is due to flush. */
  dueAt: number;
}

/**
 * Opens or counts against the open bucket of each claim (keys must be distinct); returns the buckets by open
 * key, with their counts after this batch and whether this call opened them.
 */
export async function claimBuckets(
  trx: Transaction<Database>,
  claims: readonly BucketClaim[],
  now: number,
): Promise<Map<string, { bucket: Bucket; opened: boolean }>> {
  const out = new Map<string, { bucket: Bucket; opened: boolean }>();
  // One order for everyone: two routers locking the same buckets in different orders could deadlock.
  const sorted = [...claims].sort((a, b) => (a.openKey < b.openKey ? -1 : a.openKey > b.openKey ? 1 : 0));
  for (const chunk of chunks(sorted)) {
    const rows: Insertable<Database['noise_buckets']>[] = chunk.map((c) => ({
      id: newId('nbk', now),
      kind: c.kind,
      open_key: c.openKey,
      rule_id: c.ruleId,
      user_id: c.userId,
      label: c.label,
      count: c.count,
      opened_at: now,
      due_at: c.dueAt,
      closed_at: null,
    }));
    const fresh = new Set(rows.map((r) => r.id));
    const saved = await trx
      .insertInto('noise_buckets')
      .values(rows)
      .onConflict((oc) =>
        oc.column('open_key').doUpdateSet((eb) => ({
          count: eb(eb.ref('noise_buckets.count'), '+', eb.ref('excluded.count')),
        })),
      )
      .returningAll()
      .execute();
    for (const bucket of saved) out.set(bucket.open_key!, { bucket, opened: fresh.has(bucket.id) });
  }
  return out;
}

/** The open buckets with these keys. */
export async function openBuckets(db: Db, openKeys: readonly string[]): Promise<Bucket[]> {
  const out: Bucket[] = [];
  for (const chunk of chunks(openKeys)) {
    out.push(...(await db.selectFrom('noise_buckets').selectAll().where('open_key', 'in', chunk).execute()));
  }
  return out;
}

/** One event held for one recipient. */
export interface Held {
  bucket_id: string;
  event_id: string;
  user_id: string;
  rule_id: string | null;
  /** Channel chains (`push>email`) it would have been sent on. */
  chains: string[];
}

export async function insertHeld(
  trx: Transaction<Database>,
  held: readonly Held[],
  now: number,
): Promise<void> {
  for (const chunk of chunks(held)) {
    await trx
      .insertInto('noise_held')
      .values(
        chunk.map((h) => ({
          ...h,
          chains: JSON.stringify(h.chains),
          at: now,
          released_at: null,
          notification_id: null,
        })),
      )
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

/** Locks a bucket for its flush and returns it; undefined when it no longer exists. */
export async function lockBucket(trx: Transaction<Database>, id: string): Promise<Bucket | undefined> {
  return trx
    .updateTable('noise_buckets')
    .set((eb) => ({ flushes: eb('flushes', '+', 1) }))
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** Closes a bucket: later events open a new one. */
export async function closeBucket(trx: Transaction<Database>, id: string, now: number): Promise<void> {
  await trx
    .updateTable('noise_buckets')
    .set({ open_key: null, closed_at: now })
    .where('id', '=', id)
    .execute();
}

/** Moves an open bucket's next flush. */
export async function rearmBucket(trx: Transaction<Database>, id: string, dueAt: number): Promise<void> {
  await trx.updateTable('noise_buckets').set({ due_at: dueAt }).where('id', '=', id).execute();
}

/** What a bucket holds and has not released yet, in event order. */
export async function unreleased(trx: Transaction<Database>, bucketId: string) {
  const rows = await trx
    .selectFrom('noise_held')
    .selectAll()
    .where('bucket_id', '=', bucketId)
    .where('released_at', 'is', null)
    .orderBy('event_id')
    .orderBy('user_id')
    .execute();
  return rows.map((r) => ({ ...r, chains: JSON.parse(r.chains) as string[] }));
}

/** Marks each recipient's held rows of a bucket released into that recipient's notification. */
export async function markReleased(
  trx: Transaction<Database>,
  bucketId: string,
  released: readonly { userId: string; notificationId: string }[],
  now: number,
): Promise<void> {
  for (const chunk of chunks(released)) {
    const notification = sql<string>`case ${sql.join(
      chunk.map((r) => sql`when user_id = ${r.userId} then ${r.notificationId}`),
      sql` `,
    )} end`;
    await trx
      .updateTable('noise_held')
      .set({ released_at: now, notification_id: notification })
      .where('bucket_id', '=', bucketId)
      .where(
        'user_id',
        'in',
        chunk.map((r) => r.userId),
      )
      .where('released_at', 'is', null)
      .execute();
  }
}
