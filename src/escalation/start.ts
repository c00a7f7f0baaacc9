import type { Insertable, Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import { chunks } from '../db/bulk.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { parseDuration } from '../noise/time.ts';
import { type NewTimer, scheduleTimers } from '../noise/timers.ts';
import type { EventDecision } from '../routing/decision.ts';
import type { Rule } from '../routing/rules.repo.ts';
import type { EscalationPlan, FrozenPolicy } from './escalations.repo.ts';
import { type EscalationOptions, reminderOffsets } from './options.ts';
import { afterMs, findPolicies } from './policies.repo.ts';
import { escalationTimerId } from './timer-ids.ts';
import { ESCALATION_TIMER, type EscalationTimer } from './timer-kind.ts';

/** The escalation options that apply to an event: its own fields over those of the first matched rule with any. */
export function optionsFor(
  event: EventRow,
  decision: EventDecision | undefined,
  rules: ReadonlyMap<string, Rule>,
): EscalationOptions | undefined {
  const own = event.escalation === null ? {} : (JSON.parse(event.escalation) as EscalationOptions);
  const matched = (decision?.rules ?? [])
    .filter((o) => o.matched)
    .map((o) => rules.get(o.rule)?.escalation)
    .find((e) => e !== undefined);
  const options = { ...matched, ...own };
  return Object.keys(options).length > 0 ? options : undefined;
}

/** The timer of one escalation step. */
export function escalationTimer(eventId: string, step: EscalationTimer, dueAt: number): NewTimer {
  const name =
    step.step === 'level'
      ? `level:${step.round}:${step.level}`
      : step.step === 'reminder'
        ? `reminder:${step.index}`
        : 'due';
  return {
    id: escalationTimerId(eventId, name),
    kind: ESCALATION_TIMER,
    due_at: dueAt,
    payload: { event_id: eventId, ...step },
  };
}

/**
 * Called by the router in its batch transaction, after the notifications are planned: freezes each event's
 * escalation policy onto it (an `escalations` row) and schedules its first timers (reminders, the deadline,
 * the first level), so they exist exactly when the routing commits.
 */
export async function startEscalations(
  trx: Transaction<Database>,
  batch: {
    events: readonly EventRow[];
    decisions: ReadonlyMap<string, EventDecision>;
    rules: readonly Rule[];
    notifications: readonly Insertable<Database['notifications']>[];
  },
  now: number,
): Promise<void> {
  const rulesById = new Map(batch.rules.filter((r) => r.escalation !== undefined).map((r) => [r.id, r]));
  const wanted = new Map<string, EscalationOptions>();
  for (const event of batch.events) {
    const options = optionsFor(event, batch.decisions.get(event.id), rulesById);
    if (options !== undefined) wanted.set(event.id, options);
  }
  if (wanted.size === 0) return;
  const policies = await findPolicies(
    trx,
    [...wanted.values()].flatMap((o) => (o.escalation_policy === undefined ? [] : [o.escalation_policy])),
  );
  const recipients = new Map<string, string[]>();
  for (const n of batch.notifications) {
    // Whoever only follows the event is not its owner: reminders and escalation are for the owners.
    if (n.actionable === 0) continue;
    const list = recipients.get(n.event_id) ?? [];
    list.push(n.user_id);
    recipients.set(n.event_id, list);
  }
  const rows: Insertable<Database['escalations']>[] = [];
  const timers: NewTimer[] = [];
  for (const event of batch.events) {
    const options = wanted.get(event.id);
    if (options === undefined) continue;
    const found =
      options.escalation_policy === undefined ? undefined : policies.get(options.escalation_policy);
    const policy: FrozenPolicy | null =
      found === undefined
        ? null
        : { id: found.id, name: found.name, levels: found.levels, repeat: found.repeat };
    const dueAt = event.due_at === null ? null : Number(event.due_at);
    const aging = options.aging === undefined ? null : (parseDuration(options.aging) ?? null);
    const reminders = dueAt === null ? [] : reminderOffsets(options);
    const startsAt = dueAt ?? now + (aging ?? 0);
    const scheduled = timers.length;
    const plan: EscalationPlan = {
      due_at: dueAt,
      reminders,
      aging: dueAt === null ? aging : null,
      recipients: recipients.get(event.id) ?? [],
      starts_at: startsAt,
    };
    if (dueAt !== null) {
      reminders.forEach((offset, index) => {
        if (dueAt - offset > now)
          timers.push(escalationTimer(event.id, { step: 'reminder', index }, dueAt - offset));
      });
      if (reminders.length > 0 || policy !== null)
        timers.push(escalationTimer(event.id, { step: 'due' }, dueAt));
    }
    const first = policy?.levels[0];
    if (first !== undefined) {
      timers.push(
        escalationTimer(event.id, { step: 'level', level: 0, round: 0 }, startsAt + afterMs(first)),
      );
    }
    const missing = options.escalation_policy !== undefined && policy === null;
    rows.push({
      event_id: event.id,
      policy_id: policy?.id ?? null,
      policy: policy === null ? null : JSON.stringify(policy),
      options: JSON.stringify(plan),
      status: timers.length > scheduled ? 'active' : 'exhausted',
      steps: JSON.stringify(
        missing
          ? [{ kind: 'policy_missing', at: now, targets: options.escalation_policy, notified: [] }]
          : [],
      ),
      stopped_reason: null,
      stopped_at: null,
      created_at: now,
      updated_at: now,
    });
  }
  for (const chunk of chunks(rows)) {
    await trx
      .insertInto('escalations')
      .values(chunk)
      .onConflict((oc) => oc.column('event_id').doNothing())
      .execute();
  }
  await scheduleTimers(trx, timers, now);
  const missing = rows.filter((r) => r.steps !== '[]');
  if (missing.length > 0) {
    await appendAudit(
      trx,
      missing.map((r) => ({
        at: now,
        actor: 'system' as const,
        action: 'escalation.policy_missing',
        subject_type: 'event',
        subject_id: r.event_id,
        data: { policy: wanted.get(r.event_id)?.escalation_policy },
      })),
    );
  }
}
