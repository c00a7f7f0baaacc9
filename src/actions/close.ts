import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import { publishIds } from '../db/notifier.ts';
import type { EventRow } from '../db/tables.ts';
import { notFound } from '../errors.ts';
import { stopEscalation } from '../escalation/stop.ts';
import { announceQueueItems } from '../queues/queues.live.ts';
import { finishQueueItemsOfEvents } from '../queues/queues.repo.ts';
import {
  findSourceEvents,
  lockEvent,
  openNotificationsOfEvents,
  resolveNotifications,
} from './responses.repo.ts';

/** What a source may do to its own earlier event (in the spirit of PagerDuty's `event_action`). */
export const EVENT_ACTIONS = ['acknowledge', 'resolve', 'cancel'] as const;
export type EventAction = (typeof EVENT_ACTIONS)[number];

const RESOLUTION: Record<EventAction, string> = {
  acknowledge: 'acknowledged',
  resolve: 'resolved',
  cancel: 'cancelled',
};

/** One event a source action applied to. */
export interface Closed {
  id: string;
  source_event_id: string;
  resolution: string | null;
  /** False when the event was already closed this way (or for good): nothing changed. */
  changed: boolean;
  notifications_resolved: number;
}

/**
 * Closes a source's own events (one by Herald id, or every one carrying a dedup key): their open notifications
 * resolve everywhere (streams see `notification.updated`), their escalations and reminders stop, and nothing
 * new is created. Idempotent: an event already closed the same way, or resolved, cancelled or responded to,
 * stays as it is; an acknowledged one can still be resolved or cancelled. Answers 404 when nothing matches.
 */
export async function closeSourceEvents(
  ctx: Context,
  sourceId: string,
  by: { id: string } | { dedupKey: string },
  action: EventAction,
): Promise<Closed[]> {
  const { store, clock } = ctx;
  const resolution = RESOLUTION[action];
  // Queue items finished by the close, announced after the commit (the transaction may run again).
  const items: string[] = [];
  const result = await store.db.transaction().execute(async (trx) => {
    const events = await findSourceEvents(trx, sourceId, by);
    if (events.length === 0) throw notFound('Event', 'id' in by ? by.id : `with dedup_key ${by.dedupKey}`);
    const source = await trx
      .selectFrom('sources')
      .select('name')
      .where('id', '=', sourceId)
      .executeTakeFirst();
    const now = clock.now();
    const closed: Closed[] = [];
    const users = new Set<string>();
    items.length = 0;
    for (const listed of events) {
      const event = (await lockEvent(trx, listed.id)) ?? listed;
      if (!changes(event, resolution)) {
        closed.push(summary(event, event.resolution, false, 0));
        continue;
      }
      await trx
        .updateTable('events')
        .set({ resolution, resolved_at: now, resolved_by: `source:${sourceId}` })
        .where('id', '=', event.id)
        .execute();
      const open = await openNotificationsOfEvents(trx, [event.id]);
      if (open.length > 0) {
        const first = await store.allocateSeq(trx, open.length);
        const changed = await resolveNotifications(
          trx,
          open.map((n) => n.id),
          { response: null, resolvedBy: source?.name ?? sourceId },
          first,
          now,
        );
        for (const user of changed) users.add(user);
      }
      await appendAudit(trx, {
        at: now,
        actor: `source:${sourceId}`,
        action: `event.${resolution}`,
        subject_type: 'event',
        subject_id: event.id,
        data: { from: event.resolution, notifications_resolved: open.length },
      });
      await stopEscalation(trx, event.id, now, resolution);
      // Resolved or cancelled: nothing is left to take in a shared queue (acknowledged still is).
      if (resolution !== 'acknowledged')
        items.push(...(await finishQueueItemsOfEvents(trx, [event.id], now)));
      closed.push(summary(event, resolution, true, open.length));
    }
    return { closed, users };
  });
  if (result.users.size > 0) publishIds(store.notifier, 'inbox', result.users);
  announceQueueItems(store.notifier, items);
  return result.closed;
}

/** Whether closing with `resolution` changes the event: only an open or acknowledged one changes. */
function changes(event: EventRow, resolution: string): boolean {
  if (event.resolution === null) return true;
  return event.resolution === 'acknowledged' && resolution !== 'acknowledged';
}

function summary(event: EventRow, resolution: string | null, changed: boolean, resolved: number): Closed {
  return {
    id: event.id,
    source_event_id: event.external_id,
    resolution,
    changed,
    notifications_resolved: resolved,
  };
}
