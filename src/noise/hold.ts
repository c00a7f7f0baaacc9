import type { Insertable, Transaction } from 'kysely';
import type { Database, EventRow, NoiseBucketKind } from '../db/tables.ts';
import { type BucketClaim, claimBuckets, type Held, insertHeld } from './buckets.repo.ts';
import { flushTimer } from './flush.ts';
import type { RecipientVerdict } from './judge.ts';
import type { NoiseReport } from './report.ts';
import { scheduleTimers } from './timers.ts';

type NotificationInsert = Insertable<Database['notifications']>;

/** The verdicts that hold a notification in a bucket. */
export type Holding = Extract<RecipientVerdict, { kind: 'grouped' | 'digest' | 'throttle' }>;

/** A planned notification a group, digest or throttle window claims. */
export interface Claimed {
  event: EventRow;
  notification: NotificationInsert;
  verdict: Holding;
  /** Later events of the batch folded into this notification by deduplication. */
  merged: string[];
}

const BUCKET_KIND: Record<Holding['kind'], NoiseBucketKind> = {
  grouped: 'group',
  digest: 'digest',
  throttle: 'throttle',
};
const REPORTED_AS: Record<Holding['kind'], string> = {
  grouped: 'grouped',
  digest: 'digest',
  throttle: 'throttled',
};

/**
 * Groups, digests and throttles: opens or counts against their buckets in one statement per batch, holds
 * what they take, and schedules the flush of every bucket opened now. A throttle window counts what it lets
 * through and what it holds; its count after the batch tells how much room the batch had, which stays exact
 * when several nodes route at once (the upsert serialises them on the window's row). Returns the ids of the
 * planned notifications held back.
 */
export async function holdBack(
  trx: Transaction<Database>,
  claimed: readonly Claimed[],
  chainsOf: (notificationId: string) => string[],
  report: NoiseReport,
  now: number,
): Promise<string[]> {
  const claims = new Map<string, BucketClaim & { events: Set<string>; max: number }>();
  for (const { event, notification, verdict } of claimed) {
    let claim = claims.get(verdict.openKey);
    if (claim === undefined) {
      claim = {
        kind: BUCKET_KIND[verdict.kind],
        openKey: verdict.openKey,
        ruleId: verdict.ruleId,
        userId: verdict.kind === 'grouped' ? null : notification.user_id,
        label: verdict.kind === 'grouped' ? verdict.label : null,
        count: 0,
        dueAt: verdict.dueAt,
        events: new Set(),
        max: verdict.kind === 'throttle' ? verdict.max : 0,
      };
      claims.set(verdict.openKey, claim);
    }
    // Groups and digests count events; a throttle window counts notifications.
    if (verdict.kind === 'throttle' || !claim.events.has(event.id)) claim.count++;
    claim.events.add(event.id);
  }
  if (claims.size === 0) return [];
  const buckets = await claimBuckets(trx, [...claims.values()], now);
  const room = new Map<string, number>();
  for (const [openKey, claim] of claims) {
    const counted = buckets.get(openKey)!.bucket.count;
    if (claim.kind === 'throttle') room.set(openKey, Math.max(0, claim.max - (counted - claim.count)));
  }
  const held: Held[] = [];
  const ids: string[] = [];
  for (const { event, notification, verdict, merged } of claimed) {
    const { bucket } = buckets.get(verdict.openKey)!;
    const left = room.get(verdict.openKey);
    if (left !== undefined && left > 0) {
      room.set(verdict.openKey, left - 1);
      continue;
    }
    ids.push(notification.id!);
    const chains = chainsOf(notification.id!);
    for (const eventId of [event.id, ...merged]) {
      held.push({
        bucket_id: bucket.id,
        event_id: eventId,
        user_id: notification.user_id,
        rule_id: verdict.ruleId,
        chains,
      });
    }
    report.add(event.id, REPORTED_AS[verdict.kind], {
      user_id: notification.user_id,
      bucket_id: bucket.id,
      until: new Date(bucket.due_at).toISOString(),
    });
  }
  await insertHeld(trx, held, now);
  // Only a bucket opened now gets its first timer here; an open one has its own. (Scheduling it again could
  // wait on a flush that holds that timer's row while the flush waits for this transaction's bucket lock.)
  const opened = [...buckets.values()].filter((b) => b.opened);
  await scheduleTimers(
    trx,
    opened.map(({ bucket }) => flushTimer(bucket.id, 0, bucket.due_at)),
    now,
  );
  return ids;
}
