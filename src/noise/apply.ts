import type { Insertable, Transaction } from 'kysely';
import type { AuditEntry } from '../audit/audit.repo.ts';
import { chunks } from '../db/bulk.ts';
import type { Store } from '../db/engine.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { applyDedupUpdates, type DedupUpdate } from '../notifications/notifications.repo.ts';
import { type Claimed, holdBack } from './hold.ts';
import { insertParents, type Parent, resolveParents } from './inhibitions.repo.ts';
import {
  addParent,
  type Candidate,
  dedupSlot,
  deferUntil,
  inhibitionEffects,
  judgeEvent,
  judgeRecipient,
  loadNoiseState,
  type NoiseState,
  removeParent,
  rulesOf,
} from './judge.ts';
import { NoiseReport } from './report.ts';

type NotificationInsert = Insertable<Database['notifications']>;
type DeliveryInsert = Insertable<Database['deliveries']>;

/** What routing planned for a batch, before anything is written; {@link applyNoise} edits it in place. */
export interface PlannedBatch {
  events: readonly EventRow[];
  /** The routes (`rule:<id>...`, `recipients`, ...) by which an event reached a user. */
  via: (eventId: string, userId: string) => readonly string[];
  notifications: NotificationInsert[];
  deliveries: DeliveryInsert[];
  /** The `event.routed` entries; each gains a `noise` section when noise control did something. */
  audit: AuditEntry[];
}

/** What one batch changes beyond the planned rows. */
interface Changes {
  report: NoiseReport;
  removed: Set<string>;
  claimed: Claimed[];
  /** Planned notifications later events of the batch may be folded into, by id. */
  planned: Map<string, { notification: NotificationInsert; merged: string[] }>;
  dedup: Map<string, DedupUpdate>;
  suppressed: Insertable<Database['noise_suppressed']>[];
  opened: Parent[];
  resolved: { inhibitionId: string; eventId: string; by: string }[];
}

/**
 * Applies noise control to a planned routing batch inside its transaction, before the router writes it:
 * removes the notifications (and their deliveries) that silences, inhibition, groups, digests and throttling
 * hold back, folds deduplicated ones into the open notification they repeat (no new deliveries), defers
 * channel deliveries for quiet hours, writes what it holds (buckets, held rows, timers, suppressed events,
 * inhibition parents), and notes all of it on each event's routing decision. Returns the users whose
 * existing notifications changed, for the router to announce after commit. A few queries per batch, none per
 * event or recipient.
 */
export async function applyNoise(
  trx: Transaction<Database>,
  store: Store,
  batch: PlannedBatch,
  now: number,
): Promise<{ updatedUsers: string[] }> {
  const byEvent = Map.groupBy(batch.notifications, (n) => n.event_id);
  const candidates = new Map<string, Candidate[]>();
  for (const [eventId, list] of byEvent) {
    candidates.set(
      eventId,
      list.map((n) => ({ userId: n.user_id, ruleIds: rulesOf(batch.via(eventId, n.user_id)) })),
    );
  }
  const state = await loadNoiseState(trx, batch.events, (eventId) => candidates.get(eventId) ?? [], now);
  const changes: Changes = {
    report: new NoiseReport(),
    removed: new Set(),
    claimed: [],
    planned: new Map(),
    dedup: new Map(),
    suppressed: [],
    opened: [],
    resolved: [],
  };
  for (const event of batch.events) {
    judge(state, event, byEvent.get(event.id) ?? [], candidates.get(event.id) ?? [], changes, now);
  }
  const held = await holdBack(trx, changes.claimed, chainIndex(batch.deliveries), changes.report, now);
  for (const id of held) changes.removed.add(id);
  spliceOut(batch, changes.removed);
  deferDeliveries(state, batch, changes.report, now);

  for (const chunk of chunks(changes.suppressed)) {
    await trx
      .insertInto('noise_suppressed')
      .values(chunk)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
  await insertParents(trx, changes.opened);
  await resolveParents(trx, changes.resolved, now);
  changes.report.attach(batch.audit);

  // Positions last: on PostgreSQL they hold a lock until commit.
  const updates = [...changes.dedup.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  if (updates.length === 0) return { updatedUsers: [] };
  const first = await store.allocateSeq(trx, updates.length);
  return { updatedUsers: await applyDedupUpdates(trx, updates, first, now) };
}

/** Judges one event and each of its planned notifications, in batch order (earlier events affect later ones). */
function judge(
  state: NoiseState,
  event: EventRow,
  mine: readonly NotificationInsert[],
  candidates: readonly Candidate[],
  changes: Changes,
  now: number,
): void {
  const { report } = changes;
  const held = judgeEvent(state, event, now);
  const effects = inhibitionEffects(state, event, now);
  for (const parent of effects.resolves) {
    removeParent(state, parent);
    changes.resolved.push({ inhibitionId: parent.inhibition_id, eventId: parent.event_id, by: event.id });
    report.note(event.id, 'resolved', parent.event_id);
  }
  for (const parent of effects.opens) {
    addParent(state, parent);
    changes.opened.push(parent);
    report.note(event.id, 'opened_inhibition', parent.inhibition_id);
  }
  if (held !== undefined) {
    for (const n of mine) changes.removed.add(n.id!);
    const silenced = held.kind === 'silenced';
    const byId = silenced ? held.silence_id : held.by;
    changes.suppressed.push({
      event_id: event.id,
      kind: silenced ? 'silence' : 'inhibition',
      by_id: byId,
      recipients: mine.length,
      at: now,
    });
    report.set(event.id, silenced ? 'silenced_by' : 'inhibited_by', byId);
    return;
  }
  for (const [i, n] of mine.entries()) {
    const verdict = judgeRecipient(state, event, n.user_id, candidates[i]!.ruleIds, now);
    if (verdict.kind === 'deduplicated') {
      changes.removed.add(n.id!);
      fold(verdict.into, event, n, changes);
      report.add(event.id, 'deduplicated_into', { user_id: n.user_id, notification_id: verdict.into });
      continue;
    }
    const merged: string[] = [];
    if (verdict.kind !== 'send') changes.claimed.push({ event, notification: n, verdict, merged });
    // A notification that may still be sent now is what later repeats in this batch fold into.
    if (event.dedup_key !== null && (verdict.kind === 'send' || verdict.kind === 'throttle')) {
      n.dedup_key = event.dedup_key;
      n.data = event.data;
      state.open.set(dedupSlot(event.source_id, event.dedup_key, n.user_id), n.id!);
      changes.planned.set(n.id!, { notification: n, merged });
    }
  }
}

/** Folds a repeat of `event` into notification `into`: one planned in this batch, or one already stored. */
function fold(into: string, event: EventRow, repeat: NotificationInsert, changes: Changes): void {
  const latest = {
    type: event.type,
    severity: event.severity,
    title: repeat.title,
    summary: repeat.summary ?? null,
    url: repeat.url ?? null,
    data: event.data,
  };
  const target = changes.planned.get(into);
  if (target !== undefined) {
    Object.assign(target.notification, latest, {
      occurrences: Number(target.notification.occurrences ?? 1) + 1,
      last_event_id: event.id,
    });
    target.merged.push(event.id);
    return;
  }
  const before = changes.dedup.get(into);
  changes.dedup.set(into, {
    id: into,
    ...latest,
    event_id: event.id,
    occurrences: (before?.occurrences ?? 0) + 1,
  });
}

/** Quiet hours: channel deliveries of non-critical notifications wait for the recipient's quiet time to end. */
function deferDeliveries(state: NoiseState, batch: PlannedBatch, report: NoiseReport, now: number): void {
  if (state.settings.size === 0) return;
  const events = new Map(batch.events.map((e) => [e.id, e]));
  for (const d of batch.deliveries) {
    if (d.notification_id == null || d.user_id == null) continue;
    const event = events.get(d.event_id);
    const until = event === undefined ? undefined : deferUntil(state, event, d.user_id, now);
    if (until === undefined) continue;
    d.next_attempt_at = until;
    report.add(d.event_id, 'deferred', {
      user_id: d.user_id,
      channel: d.channel,
      until: new Date(until).toISOString(),
    });
  }
}

/** The channel chains (`push>email`) planned for each notification, from its deliveries. */
function chainIndex(deliveries: readonly DeliveryInsert[]) {
  const chains = new Map<string, string[]>();
  for (const d of deliveries) {
    if (d.notification_id == null) continue;
    const rest = d.fallback == null ? [] : (JSON.parse(d.fallback) as string[]);
    const list = chains.get(d.notification_id) ?? [];
    list.push([d.channel, ...rest].join('>'));
    chains.set(d.notification_id, list);
  }
  return (id: string) => chains.get(id) ?? [];
}

/** Removes held-back notifications and their deliveries from the planned batch, in place. */
function spliceOut(batch: PlannedBatch, removed: ReadonlySet<string>): void {
  if (removed.size === 0) return;
  keepOnly(batch.notifications, (n) => !removed.has(n.id!));
  keepOnly(batch.deliveries, (d) => d.notification_id == null || !removed.has(d.notification_id));
}

function keepOnly<T>(list: T[], keep: (item: T) => boolean): void {
  let j = 0;
  for (const item of list) if (keep(item)) list[j++] = item;
  list.length = j;
}
