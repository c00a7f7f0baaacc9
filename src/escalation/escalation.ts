import { sql } from 'kysely';
import { Type } from 'typebox';
import { iso } from '../clock.ts';
import type { Db, Store } from '../db/engine.ts';
import type { App, Deps } from '../deps.ts';
import { security } from '../http/schemas.ts';
import type { TimerHandler } from '../noise/timers.ts';
import { findEscalation } from './escalations.repo.ts';
import { escalationHandler } from './fire.ts';
import { policiesRoutes } from './policies.routes.ts';
import { ESCALATION_TIMER } from './timer-kind.ts';

/*
 * Escalation and deadlines, wired into Herald: policies (routes), the timer handler that fires levels,
 * reminders and overdue notices, the event view, and the overdue-timers check.
 */

/** A timer counts as overdue once it is this late. */
export const OVERDUE_AFTER_MS = 60_000;

/** The timer handlers escalation needs, for the app's TimerWorker. */
export function escalationTimerHandlers(store: Store): Record<string, TimerHandler> {
  return { [ESCALATION_TIMER]: escalationHandler(store) };
}

/** An event's escalation as `GET /v1/events/{id}` shows it; null when it has none. */
export async function presentEscalation(db: Db, eventId: string) {
  const e = await findEscalation(db, eventId);
  if (e === undefined) return null;
  return {
    policy: e.policy,
    due_at: iso(e.plan.due_at),
    starts_at: iso(e.plan.starts_at),
    reminders: e.plan.reminders.map((ms) => iso((e.plan.due_at ?? 0) - ms)),
    aging_ms: e.plan.aging,
    steps: e.steps.map((s) => ({ ...s, at: iso(s.at) })),
    status: e.status,
    stopped_reason: e.stopped_reason,
    stopped_at: iso(e.stopped_at),
  };
}

/** Timers due more than {@link OVERDUE_AFTER_MS} ago and still not fired: how many, and the oldest. */
export async function overdueTimers(db: Db, now: number, limit = 50) {
  const cutoff = now - OVERDUE_AFTER_MS;
  const count = await db
    .selectFrom('timers')
    .select(sql<number>`count(*)`.as('n'))
    .where('due_at', '<', cutoff)
    .executeTakeFirstOrThrow();
  const items = await db
    .selectFrom('timers')
    .select(['id', 'kind', 'due_at', 'attempts', 'last_error'])
    .where('due_at', '<', cutoff)
    .orderBy('due_at')
    .limit(limit)
    .execute();
  return { count: Number(count.n), items };
}

const Overdue = Type.Object({
  count: Type.Integer(),
  threshold_ms: Type.Integer(),
  items: Type.Array(
    Type.Object({
      id: Type.String(),
      kind: Type.String(),
      due_at: Type.String({ format: 'date-time' }),
      late_ms: Type.Integer(),
      attempts: Type.Integer(),
      last_error: Type.Union([Type.String(), Type.Null()]),
    }),
  ),
});

/** `/escalation-policies` and `GET /timers/overdue` (admin). */
export async function escalationRoutes(app: App, deps: Deps): Promise<void> {
  await policiesRoutes(app, deps);
  app.get(
    '/timers/overdue',
    {
      preHandler: deps.auth.require('admin'),
      schema: {
        tags: ['escalation'],
        security,
        summary:
          'Durable timers (escalations, reminders, noise flushes) due more than a minute ago and not fired',
        response: { 200: Overdue },
      },
    },
    async () => {
      const now = deps.clock.now();
      const { count, items } = await overdueTimers(deps.store.db, now);
      deps.metrics.timersOverdue.set(count);
      return {
        count,
        threshold_ms: OVERDUE_AFTER_MS,
        items: items.map((t) => ({
          id: t.id,
          kind: t.kind,
          due_at: iso(Number(t.due_at))!,
          late_ms: now - Number(t.due_at),
          attempts: Number(t.attempts),
          last_error: t.last_error,
        })),
      };
    },
  );
}
