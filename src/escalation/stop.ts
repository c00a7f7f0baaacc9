import type { Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import type { Db } from '../db/engine.ts';
import type { Database } from '../db/tables.ts';
import { escalationTimerRange } from './timer-ids.ts';

/**
 * Stops an event's escalation and deadline timers (levels, reminders, the overdue notice, aging) in the
 * caller's transaction: call it where the event is acknowledged, answered, resolved or cancelled, so the
 * stop commits with that change. Marks the escalation stopped with `reason` and audits
 * `escalation.stopped`; returns how many pending timers it cancelled (0 when nothing was running).
 */
export async function stopEscalation(
  trx: Transaction<Database> | Db,
  eventId: string,
  now: number,
  reason: string,
): Promise<number> {
  const { from, to } = escalationTimerRange(eventId);
  const cancelled = await trx
    .deleteFrom('timers')
    .where('id', '>=', from)
    .where('id', '<', to)
    .executeTakeFirst();
  const count = Number(cancelled.numDeletedRows);
  const stopped = await trx
    .updateTable('escalations')
    .set({ status: 'stopped', stopped_reason: reason, stopped_at: now, updated_at: now })
    .where('event_id', '=', eventId)
    .where('status', '=', 'active')
    .executeTakeFirst();
  if (Number(stopped.numUpdatedRows) > 0) {
    await appendAudit(trx, {
      at: now,
      actor: 'system',
      action: 'escalation.stopped',
      subject_type: 'event',
      subject_id: eventId,
      data: { reason, cancelled_timers: count },
    });
  }
  return count;
}
