import type { Insertable, Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import { chunks } from '../db/bulk.ts';
import type { Store } from '../db/engine.ts';
import { publishIds } from '../db/notifier.ts';
import type { Database, NoiseBucketKind } from '../db/tables.ts';
import { userDelivery } from '../delivery/fallback.ts';
import { eventTitle, newNotification } from '../notifications/notifications.repo.ts';
import {
  type Bucket,
  closeBucket,
  lockBucket,
  markReleased,
  rearmBucket,
  unreleased,
} from './buckets.repo.ts';
import { loadRulePolicies } from './options.ts';
import { loadRecipientNoise } from './settings.repo.ts';
import { quietUntil } from './time.ts';
import { type NewTimer, oneByOne, scheduleTimers, type TimerHandler } from './timers.ts';

/** The timer kind that flushes a bucket (group, throttle window, digest). */
export const FLUSH_TIMER = 'noise.flush';

/** The timer of a bucket's `round`-th flush; the id makes scheduling it twice harmless. */
export function flushTimer(bucketId: string, round: number, dueAt: number): NewTimer {
  return {
    id: `noise:${bucketId}:${round}`,
    kind: FLUSH_TIMER,
    due_at: dueAt,
    payload: { bucket_id: bucketId },
  };
}

// Summaries list this many members by name; the count is always exact.
const LISTED = 100;
const SEVERITY_ORDER = ['info', 'warning', 'error', 'critical'];

/**
 * Flushes a bucket when its timer fires: each recipient's held events become one notification listing them
 * (with deliveries on the channels they would have had, quiet hours permitting), and the held rows are
 * marked released into it. A group with an `interval` that released something stays open and flushes again
 * an interval later; every other bucket closes, so the next event opens a new one.
 */
export function flushHandler(store: Store): TimerHandler {
  return oneByOne(async (trx, timer, now) => {
    const { bucket_id } = timer.payload as { bucket_id: string };
    const bucket = await lockBucket(trx, bucket_id);
    if (bucket === undefined || bucket.closed_at !== null) return undefined;
    const held = await unreleased(trx, bucket.id);
    const interval =
      bucket.kind === 'group' && bucket.rule_id !== null
        ? (await loadRulePolicies(trx)).get(bucket.rule_id)?.group?.intervalMs
        : undefined;
    if (held.length > 0 && interval !== undefined) {
      await rearmBucket(trx, bucket.id, now + interval);
      await scheduleTimers(trx, [flushTimer(bucket.id, bucket.flushes, now + interval)], now);
    } else {
      await closeBucket(trx, bucket.id, now);
    }
    if (held.length === 0) return undefined;
    const made = await release(trx, store, bucket, held, now);
    await appendAudit(trx, {
      at: now,
      actor: 'system',
      action: 'noise.flushed',
      subject_type: 'noise_bucket',
      subject_id: bucket.id,
      data: {
        kind: bucket.kind,
        rule_id: bucket.rule_id,
        events: held.length,
        notifications: made.users.length,
      },
    });
    return () => {
      publishIds(store.notifier, 'inbox', made.users);
      if (made.deliveries > 0) store.notifier.publish('deliveries', '');
    };
  });
}

type HeldRow = Awaited<ReturnType<typeof unreleased>>[number];

/** Writes one summary notification per recipient of `held`; returns who got one and how many deliveries. */
async function release(
  trx: Transaction<Database>,
  store: Store,
  bucket: Bucket,
  held: HeldRow[],
  now: number,
): Promise<{ users: string[]; deliveries: number }> {
  const eventIds = [...new Set(held.map((h) => h.event_id))];
  const events = new Map<string, Member>();
  for (const chunk of chunks(eventIds)) {
    const rows = await trx
      .selectFrom('events')
      .select(['id', 'source_id', 'type', 'severity', 'title', 'summary', 'url', 'subject', 'time'])
      .where('id', 'in', chunk)
      .execute();
    for (const row of rows) events.set(row.id, row);
  }
  const byUser = Map.groupBy(
    held.filter((h) => events.has(h.event_id)),
    (h) => h.user_id,
  );
  const settings = await loadRecipientNoise(trx, [...byUser.keys()]);
  const notifications: Insertable<Database['notifications']>[] = [];
  const deliveries: Insertable<Database['deliveries']>[] = [];
  for (const [userId, rows] of byUser) {
    const members = rows.map((r) => events.get(r.event_id)!);
    const notification = summaryRow(bucket, userId, members, chainsOf(rows), now);
    notifications.push(notification);
    const critical = notification.severity === 'critical';
    const quiet = settings.get(userId);
    const until =
      critical || quiet?.quiet_hours == null ? undefined : quietUntil(now, quiet.timezone, quiet.quiet_hours);
    for (const [first, ...rest] of chainsOf(rows)) {
      const delivery = userDelivery({
        eventId: notification.event_id,
        notificationId: notification.id,
        userId,
        channel: first!,
        fallback: rest,
        now,
      });
      if (until !== undefined) delivery.next_attempt_at = until;
      deliveries.push(delivery);
    }
  }
  if (notifications.length === 0) return { users: [], deliveries: 0 };
  const first = await store.allocateSeq(trx, notifications.length);
  notifications.forEach((n, i) => {
    n.seq = first + i;
    n.created_seq = first + i;
  });
  const inserted = new Set<string>();
  for (const chunk of chunks(notifications)) {
    const rows = await trx
      .insertInto('notifications')
      .values(chunk)
      .onConflict((oc) => oc.columns(['event_id', 'user_id']).doNothing())
      .returning('id')
      .execute();
    for (const row of rows) inserted.add(row.id);
  }
  const sent = deliveries.filter((d) => inserted.has(d.notification_id!));
  for (const chunk of chunks(sent)) {
    await trx
      .insertInto('deliveries')
      .values(chunk)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
  await markReleased(
    trx,
    bucket.id,
    notifications.map((n) => ({ userId: n.user_id, notificationId: n.id })),
    now,
  );
  return {
    users: notifications.filter((n) => inserted.has(n.id)).map((n) => n.user_id),
    deliveries: sent.length,
  };
}

interface Member {
  id: string;
  source_id: string;
  type: string;
  severity: string;
  title: string | null;
  summary: string | null;
  url: string | null;
  subject: string | null;
  time: number;
}

/** The distinct channel chains of a recipient's held rows, each first channel once (as routing plans them). */
function chainsOf(rows: readonly HeldRow[]): string[][] {
  const chains: string[][] = [];
  const used = new Set<string>(['inapp']);
  for (const key of new Set(rows.flatMap((r) => r.chains))) {
    const chain = key.split('>');
    if (used.has(chain[0]!)) continue;
    for (const channel of chain) used.add(channel);
    chains.push(chain);
  }
  return chains;
}

const TITLES: Record<NoiseBucketKind, (n: number, what: string, label: string | null) => string> = {
  group: (n, what, label) => `${n} × ${what}${label ? `: ${label}` : ''}`,
  digest: (n, what) => `Digest: ${n} × ${what}`,
  throttle: (n, what) => `${n} more × ${what} (held back by throttling)`,
};

/** The notification standing for `members` (in event order) of a bucket, for one recipient. */
function summaryRow(
  bucket: Bucket,
  userId: string,
  members: Member[],
  chains: string[][],
  now: number,
): Insertable<Database['notifications']> {
  const first = members[0]!;
  const types = new Set(members.map((m) => m.type));
  const type = types.size === 1 ? first.type : `herald.${bucket.kind}`;
  const single = members.length === 1 && bucket.kind === 'group';
  const severity = members.reduce(
    (top, m) => (SEVERITY_ORDER.indexOf(m.severity) > SEVERITY_ORDER.indexOf(top) ? m.severity : top),
    'info',
  );
  const listed = members.slice(0, LISTED);
  const lines = members.slice(0, 10).map(eventTitle);
  if (members.length > 10) lines.push(`… and ${members.length - 10} more`);
  return {
    ...newNotification(
      {
        event_id: first.id,
        user_id: userId,
        source_id: first.source_id,
        type,
        severity,
        title: single
          ? eventTitle(first)
          : TITLES[bucket.kind](
              members.length,
              types.size === 1 ? first.type : 'notifications',
              bucket.label,
            ),
        summary: single ? first.summary : lines.join('\n'),
        url: members.length === 1 ? first.url : null,
        channels: ['inapp', ...chains.flat()].filter((c, i, all) => all.indexOf(c) === i),
      },
      now,
    ),
    // A summary of several events cannot answer for each of them; a group of one stands for its event.
    actionable: single ? 1 : 0,
    occurrences: members.length,
    data: JSON.stringify({
      noise: bucket.kind,
      bucket_id: bucket.id,
      label: bucket.label,
      count: members.length,
      members: listed.map((m) => ({
        event_id: m.id,
        type: m.type,
        severity: m.severity,
        title: eventTitle(m),
        subject: m.subject,
        url: m.url,
        time: new Date(m.time).toISOString(),
      })),
    }),
  };
}
