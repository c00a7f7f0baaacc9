import type { Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { Store } from '../db/engine.ts';
import { publishIds } from '../db/notifier.ts';
import type { Database, EscalationStatus, EventRow } from '../db/tables.ts';
import { expandGroups } from '../directory/groups.repo.ts';
import { existingUserIds, findManagers } from '../directory/users.repo.ts';
import { type NewTimer, scheduleTimers, type TimerHandler } from '../noise/timers.ts';
import { eventTitle } from '../notifications/notifications.repo.ts';
import { announceQueueItems } from '../queues/queues.live.ts';
import { raiseQueueItems } from '../queues/queues.repo.ts';
import {
  type Escalation,
  type FrozenPolicy,
  findEscalation,
  recordStep,
  type Step,
} from './escalations.repo.ts';
import { type Notified, renotify } from './notify.ts';
import { afterMs, type Level } from './policies.repo.ts';
import { escalationTimer } from './start.ts';
import type { EscalationTimer } from './timer-kind.ts';

/**
 * Fires one escalation step in the timer's transaction: a reminder or the overdue notice to the event's
 * current recipients, or a policy level to its targets (a shared queue among them gets one item, not a
 * notification per member), then schedules the next level (or the next round).
 * Later levels count from when the previous one was due, not from when it fired, so a late worker does
 * not push the whole escalation back.
 */
export function escalationHandler(store: Store): TimerHandler {
  return async (trx, timer, now) => {
    const payload = timer.payload as { event_id: string } & EscalationTimer;
    const escalation = await findEscalation(trx, payload.event_id);
    if (escalation === undefined || escalation.status !== 'active') return undefined;
    const event = await trx
      .selectFrom('events')
      .selectAll()
      .where('id', '=', payload.event_id)
      .executeTakeFirst();
    if (event === undefined) return undefined;
    const base = eventTitle(event);
    let step: Step;
    let status: EscalationStatus = 'active';
    let notified: Notified;
    let queued: string[] = [];
    const next: NewTimer[] = [];
    if (payload.step === 'level') {
      const policy = escalation.policy!;
      const level = policy.levels[payload.level]!;
      const title = `Escalated: ${base}`;
      // A shared queue gets one item any member can take, as routing gives it; nobody is sent anything for it.
      const raised = await raiseQueueItems(trx, event, level.targets.groups ?? [], title, now);
      queued = raised.items.map((i) => i.item_id);
      const users = await levelUsers(trx, escalation, level, raised.queues);
      notified = await renotify(
        trx,
        store,
        event,
        { users, channels: level.channels, title, stepKey: `l${payload.round}_${payload.level}` },
        now,
      );
      step = {
        kind: 'level',
        level: payload.level,
        round: payload.round,
        at: now,
        targets: level.targets,
        notified: notified.users,
        queues: raised.items,
      };
      next.push(...nextLevel(event.id, policy, payload, timer.due_at));
    } else {
      const dueAt = iso(escalation.plan.due_at);
      const title =
        payload.step === 'due'
          ? `Overdue: ${base} (was due at ${dueAt})`
          : `Reminder: ${base} due at ${dueAt}`;
      notified = await renotify(
        trx,
        store,
        event,
        {
          users: 'current',
          channels: 'used',
          title,
          stepKey: payload.step === 'due' ? 'due' : `r${payload.index}`,
        },
        now,
      );
      step = {
        kind: payload.step === 'due' ? 'overdue' : 'reminder',
        at: now,
        ...(payload.step === 'reminder' ? { targets: { reminder: payload.index } } : {}),
        notified: notified.users,
      };
    }
    await scheduleTimers(trx, next, now);
    if (next.length === 0 && !(await pending(trx, event, timer.id))) status = 'exhausted';
    await recordStep(trx, escalation, step, status, now);
    await appendAudit(trx, {
      at: now,
      actor: 'system',
      action: payload.step === 'level' ? 'escalation.level_fired' : `escalation.${step.kind}`,
      subject_type: 'event',
      subject_id: event.id,
      data: { ...step, due_at: timer.due_at },
    });
    return () => {
      publishIds(store.notifier, 'inbox', notified.users);
      if (notified.deliveries > 0) store.notifier.publish('deliveries', '');
      announceQueueItems(store.notifier, queued);
    };
  };
}

/** Whether other timers of the event's escalation are still waiting (besides the one firing now). */
async function pending(trx: Transaction<Database>, event: EventRow, firing: string): Promise<boolean> {
  const row = await trx
    .selectFrom('timers')
    .select('id')
    .where('id', '>=', `esc:${event.id}:`)
    .where('id', '<', `esc:${event.id};`)
    .where('id', '!=', firing)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

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
