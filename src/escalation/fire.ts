import type { Transaction } from 'kysely';
import { type AuditEntry, appendAudit } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import { chunks } from '../db/bulk.ts';
import type { Store } from '../db/engine.ts';
import { publishIds } from '../db/notifier.ts';
import type { Database, EscalationStatus, EventRow } from '../db/tables.ts';
import { expandGroups } from '../directory/groups.repo.ts';
import { existingUserIds, findManagers } from '../directory/users.repo.ts';
import { findEvents } from '../events/events.repo.ts';
import { type NewTimer, scheduleTimers, type Timer, type TimerHandler } from '../noise/timers.ts';
import { eventTitle } from '../notifications/notifications.repo.ts';
import { announceQueueItems } from '../queues/queues.live.ts';
import { raiseQueueItems } from '../queues/queues.repo.ts';
import {
  type Escalation,
  type FrozenPolicy,
  findEscalations,
  recordStep,
  type Step,
} from './escalations.repo.ts';
import { type Renotify, renotify } from './notify.ts';
import { afterMs, type Level } from './policies.repo.ts';
import { escalationTimer } from './start.ts';
import { escalationTimerRange } from './timer-ids.ts';
import type { EscalationTimer } from './timer-kind.ts';

/*
 * Fires escalation steps in the timers' transaction: a reminder or the overdue notice to the event's current
 * recipients, or a policy level to its targets (a shared queue among them gets one item, not a notification
 * per member), then schedules the next level (or the next round).
 * Later levels count from when the previous one was due, not from when it fired, so a late worker does not
 * push the whole escalation back.
 * The timers that come due together fire together: thousands of escalations sharing a deadline cost a few
 * statements per batch, not a dozen per escalation.
 */

type Payload = { event_id: string } & EscalationTimer;

/** One timer about to fire: what it sends, and the step it records once it is known who was notified. */
interface Firing {
  timer: Timer;
  escalation: Escalation;
  event: EventRow;
  notify: Renotify;
  step: Omit<Step, 'notified'>;
  /** The audit action. */
  action: string;
  /** The timer that follows it (a level's next level or round). */
  next: NewTimer[];
}

export function escalationHandler(store: Store): TimerHandler {
  return async (trx, timers, now) => {
    const users: string[] = [];
    const queued: string[] = [];
    let deliveries = 0;
    // An event's timers due together fire one after the other: each sees the step the one before recorded.
    const all = rounds(timers);
    for (const [r, round] of all.entries()) {
      // An event with a timer in the next round has one waiting, though it is no longer in the table.
      const later = new Set((all[r + 1] ?? []).map((t) => (t.payload as Payload).event_id));
      const fired = await fireRound(trx, store, round, later, now);
      users.push(...fired.users);
      queued.push(...fired.queued);
      deliveries += fired.deliveries;
    }
    return () => {
      publishIds(store.notifier, 'inbox', new Set(users));
      if (deliveries > 0) store.notifier.publish('deliveries', '');
      announceQueueItems(store.notifier, queued);
    };
  };
}

/** The timers in rounds, each with at most one timer per event, in the order given. */
function rounds(timers: readonly Timer[]): Timer[][] {
  const out: Timer[][] = [];
  const seen = new Map<string, number>();
  for (const timer of timers) {
    const eventId = (timer.payload as Payload).event_id;
    const round = seen.get(eventId) ?? 0;
    seen.set(eventId, round + 1);
    if (round === out.length) out.push([]);
    out[round]!.push(timer);
  }
  return out;
}

/**
 * Fires timers of distinct events; `later` names events with more of the batch's timers to fire after these.
 * Returns whom to tell after the commit.
 */
async function fireRound(
  trx: Transaction<Database>,
  store: Store,
  timers: readonly Timer[],
  later: ReadonlySet<string>,
  now: number,
): Promise<{ users: string[]; queued: string[]; deliveries: number }> {
  const ids = timers.map((t) => (t.payload as Payload).event_id);
  const escalations = await findEscalations(trx, ids);
  const events = new Map((await findEvents(trx, ids)).map((e) => [e.id, e]));
  const firings: Firing[] = [];
  for (const timer of timers) {
    const payload = timer.payload as Payload;
    const escalation = escalations.get(payload.event_id);
    const event = events.get(payload.event_id);
    // An escalation stopped (or an event deleted) since the timer was set: nothing to do.
    if (escalation === undefined || escalation.status !== 'active' || event === undefined) continue;
    firings.push(await prepare(trx, timer, payload, escalation, event, now));
  }
  const notified = await renotify(
    trx,
    store,
    firings.map((f) => ({ event: f.event, what: f.notify })),
    now,
  );
  await scheduleTimers(
    trx,
    firings.flatMap((f) => f.next),
    now,
  );
  const waiting = await othersWaiting(
    trx,
    firings.filter((f) => f.next.length === 0 && !later.has(f.event.id)).map((f) => f.timer),
  );
  for (const id of later) waiting.add(id);
  const audit: AuditEntry[] = [];
  for (const [i, f] of firings.entries()) {
    const step: Step = { ...f.step, notified: notified[i]!.users };
    const status: EscalationStatus = f.next.length === 0 && !waiting.has(f.event.id) ? 'exhausted' : 'active';
    await recordStep(trx, f.escalation, step, status, now);
    audit.push({
      at: now,
      actor: 'system',
      action: f.action,
      subject_type: 'event',
      subject_id: f.event.id,
      data: { ...step, due_at: f.timer.due_at },
    });
  }
  await appendAudit(trx, audit);
  return {
    users: notified.flatMap((n) => n.users),
    queued: firings.flatMap((f) => f.step.queues?.map((q) => q.item_id) ?? []),
    deliveries: notified.reduce((sum, n) => sum + n.deliveries, 0),
  };
}

/**
 * What one timer sends and records: a level raises its queue items, reaches its targets and schedules what
 * follows it; a reminder or the overdue notice goes to whoever has the event now, on the channels they had.
 */
async function prepare(
  trx: Transaction<Database>,
  timer: Timer,
  payload: Payload,
  escalation: Escalation,
  event: EventRow,
  now: number,
): Promise<Firing> {
  const base = eventTitle(event);
  if (payload.step === 'level') {
    const policy = escalation.policy!;
    const level = policy.levels[payload.level]!;
    const title = `Escalated: ${base}`;
    // A shared queue gets one item any member can take, as routing gives it; nobody is sent anything for it.
    const queued = await raiseQueueItems(trx, event, level.targets.groups ?? [], title, now);
    const users = await levelUsers(trx, escalation, level, queued.queues);
    return {
      timer,
      escalation,
      event,
      notify: { users, channels: level.channels, title, stepKey: `l${payload.round}_${payload.level}` },
      step: {
        kind: 'level',
        level: payload.level,
        round: payload.round,
        at: now,
        targets: level.targets,
        queues: queued.items,
      },
      action: 'escalation.level_fired',
      next: nextLevel(event.id, policy, payload, timer.due_at),
    };
  }
  const dueAt = iso(escalation.plan.due_at);
  const overdue = payload.step === 'due';
  return {
    timer,
    escalation,
    event,
    notify: {
      users: 'current',
      channels: 'used',
      title: overdue ? `Overdue: ${base} (was due at ${dueAt})` : `Reminder: ${base} due at ${dueAt}`,
      stepKey: overdue ? 'due' : `r${payload.index}`,
    },
    step: overdue
      ? { kind: 'overdue', at: now }
      : { kind: 'reminder', at: now, targets: { reminder: payload.index } },
    action: overdue ? 'escalation.overdue' : 'escalation.reminder',
    next: [],
  };
}

/** The events among these timers' whose escalations have other timers waiting (besides the ones firing). */
async function othersWaiting(trx: Transaction<Database>, firing: readonly Timer[]): Promise<Set<string>> {
  const waiting = new Set<string>();
  for (const chunk of chunks(firing, CHUNK)) {
    const rows = await trx
      .selectFrom('timers')
      .select('payload')
      .where((eb) =>
        eb.or(
          chunk.map((t) => {
            const { from, to } = escalationTimerRange((t.payload as Payload).event_id);
            return eb.and([eb('id', '>=', from), eb('id', '<', to), eb('id', '!=', t.id)]);
          }),
        ),
      )
      .execute();
    for (const row of rows) waiting.add((JSON.parse(row.payload) as Payload).event_id);
  }
  return waiting;
}

// Timers per statement of othersWaiting: three bound values each.
const CHUNK = 200;

/**
 * The timer of the level after the one firing: the next level, or the first of the next round; none after
 * the last round.
 */
function nextLevel(
  eventId: string,
  policy: FrozenPolicy,
  firing: { level: number; round: number },
  dueAt: number,
): NewTimer[] {
  const following = policy.levels[firing.level + 1];
  if (following !== undefined) {
    const step = { step: 'level', level: firing.level + 1, round: firing.round } as const;
    return [escalationTimer(eventId, step, dueAt + afterMs(following))];
  }
  if (firing.round >= policy.repeat) return [];
  const step = { step: 'level', level: 0, round: firing.round + 1 } as const;
  return [escalationTimer(eventId, step, dueAt + afterMs(policy.levels[0]!))];
}

/**
 * The people a level reaches: the event's first recipients, their managers, the members of its groups
 * other than `queues` (those get a shared item instead), users.
 */
async function levelUsers(
  trx: Transaction<Database>,
  escalation: Escalation,
  level: Level,
  queues: ReadonlySet<string>,
): Promise<string[]> {
  const t = level.targets;
  const users = new Set<string>();
  const original = escalation.plan.recipients;
  if (t.recipients) for (const u of original) users.add(u);
  if (t.managers && original.length > 0) {
    for (const found of (await findManagers(trx, original)).values()) {
      if (found.known && found.manager !== null) users.add(found.manager);
    }
  }
  const groups = (t.groups ?? []).filter((g) => !queues.has(g));
  if (groups.length > 0) {
    for (const members of (await expandGroups(trx, groups)).values()) for (const u of members) users.add(u);
  }
  if ((t.users?.length ?? 0) > 0) for (const u of await existingUserIds(trx, t.users!)) users.add(u);
  return [...users].sort();
}
