import type { Db } from '../db/engine.ts';
import type { EscalationStatus } from '../db/tables.ts';
import type { Level } from './policies.repo.ts';

/** A policy as frozen onto an event when it was routed. */
export interface FrozenPolicy {
  id: string;
  name: string | null;
  levels: Level[];
  repeat: number;
}

/** What an escalation was started with (ms). */
export interface EscalationPlan {
  due_at: number | null;
  reminders: number[];
  aging: number | null;
  /** The people the event notified when routed (`recipients` targets). */
  recipients: string[];
  /** When the policy's first level counts from. */
  starts_at: number;
}

/** One step taken: a level fired, a reminder or the overdue notice sent. */
export interface Step {
  kind: 'level' | 'reminder' | 'overdue' | 'policy_missing';
  level?: number;
  round?: number;
  at: number;
  targets?: unknown;
  notified: string[];
  /** A level's shared queue items (one per queue it names), created or brought back. */
  queues?: { group_id: string; item_id: string }[];
}

export interface Escalation {
  event_id: string;
  policy: FrozenPolicy | null;
  plan: EscalationPlan;
  status: EscalationStatus;
  steps: Step[];
  stopped_reason: string | null;
  stopped_at: number | null;
}

/** An event's escalation, if it has one. */
export async function findEscalation(db: Db, eventId: string): Promise<Escalation | undefined> {
  return (await findEscalations(db, [eventId])).get(eventId);
}

/** The escalations of these events, by event id (events without one are left out). */
export async function findEscalations(db: Db, eventIds: readonly string[]): Promise<Map<string, Escalation>> {
  if (eventIds.length === 0) return new Map();
  const rows = await db
    .selectFrom('escalations')
    .selectAll()
    .where('event_id', 'in', [...eventIds])
    .execute();
  return new Map(
    rows.map((row) => [
      row.event_id,
      {
        event_id: row.event_id,
        policy: row.policy === null ? null : (JSON.parse(row.policy) as FrozenPolicy),
        plan: JSON.parse(row.options) as EscalationPlan,
        status: row.status,
        steps: JSON.parse(row.steps) as Step[],
        stopped_reason: row.stopped_reason,
        stopped_at: row.stopped_at === null ? null : Number(row.stopped_at),
      },
    ]),
  );
}

/** Appends a step (and optionally a new status) to an escalation. */
export async function recordStep(
  db: Db,
  escalation: Escalation,
  step: Step,
  status: EscalationStatus,
  now: number,
): Promise<void> {
  await db
    .updateTable('escalations')
    .set({ steps: JSON.stringify([...escalation.steps, step]), status, updated_at: now })
    .where('event_id', '=', escalation.event_id)
    .execute();
}
