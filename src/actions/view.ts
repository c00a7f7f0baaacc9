import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import type { NotificationRow } from '../db/tables.ts';
import type { Action } from '../events/events.schema.ts';
import { actionsOf } from './policy.ts';
import { type Responder, type WriteBackStatus, writeBacks } from './writeback.ts';

/** What an inbox item shows about its actions: what it offers and how its response was written back. */
export interface ActionView {
  actions: Action[];
  write_back: WriteBackStatus | null;
}

/**
 * The action view of each notification, by id, read in three queries for a page. The write-back shown is
 * the one of the recipient's own response, else of the latest response to the event (the one that handled it).
 */
export async function actionViews(
  db: Db,
  rows: readonly NotificationRow[],
): Promise<Map<string, ActionView>> {
  const out = new Map<string, ActionView>();
  const eventIds = [...new Set(rows.map((r) => r.event_id))];
  if (eventIds.length === 0) return out;
  const [events, responses] = await Promise.all([
    db.selectFrom('events').select(['id', 'actions']).where('id', 'in', eventIds).execute(),
    db
      .selectFrom('responses')
      .select(['event_id', 'notification_id', 'delivery_id'])
      .where('event_id', 'in', eventIds)
      .orderBy('id')
      .execute(),
  ]);
  const statuses = await writeBacks(
    db,
    responses.flatMap((r) => (r.delivery_id === null ? [] : [r.delivery_id])),
  );
  const actions = new Map(events.map((e) => [e.id, actionsOf(e)]));
  for (const row of rows) {
    const ofEvent = responses.filter((r) => r.event_id === row.event_id);
    const chosen = ofEvent.find((r) => r.notification_id === row.id) ?? ofEvent.at(-1);
    out.set(row.id, {
      actions: row.actionable === 1 ? (actions.get(row.event_id) ?? []) : [],
      write_back: chosen?.delivery_id ? (statuses.get(chosen.delivery_id) ?? null) : null,
    });
  }
  return out;
}

/** An event's responses as `GET /events/{id}` shows them, each with its write-back, oldest first. */
export async function responsesWithWriteBack(db: Db, eventId: string) {
  const rows = await db
    .selectFrom('responses')
    .selectAll()
    .where('event_id', '=', eventId)
    .orderBy('id')
    .execute();
  const statuses = await writeBacks(
    db,
    rows.flatMap((r) => (r.delivery_id === null ? [] : [r.delivery_id])),
  );
  return rows.map((r) => ({
    id: r.id,
    notification_id: r.notification_id,
    action: r.action,
    comment: r.comment,
    responder: JSON.parse(r.responder) as Responder,
    via: r.via,
    at: iso(r.at),
    write_back: r.delivery_id === null ? null : (statuses.get(r.delivery_id) ?? null),
  }));
}
