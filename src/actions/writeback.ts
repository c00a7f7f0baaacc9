import type { Insertable } from 'kysely';
import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import type { DeliveriesTable, DeliveryRow, EventRow, ResponseRow } from '../db/tables.ts';
import { newDelivery } from '../delivery/deliveries.repo.ts';

/*
 * Write-back: each response is delivered to the source as a Standard Webhooks message (channel `callback`),
 * retried on the webhook schedule like any delivery. Its lane is `callback:<event id>`: the claim only takes
 * the oldest pending write-back of a lane (see claimDueDeliveries), so one event's responses reach the source
 * one at a time in the order they were given, and one that waits for a retry holds back the later ones, while
 * write-backs of different events go out side by side.
 */

/** The delivery channel of write-backs. */
export const CALLBACK_CHANNEL = 'callback';

/** The write-back delivery of a new response, due now. */
export function newWriteBack(args: {
  id: string;
  event: EventRow;
  notificationId: string;
  responseId: string;
  now: number;
}): Insertable<DeliveriesTable> {
  const { id, event, notificationId, responseId, now } = args;
  return newDelivery(
    {
      id,
      event_id: event.id,
      channel: CALLBACK_CHANNEL,
      lane: `${CALLBACK_CHANNEL}:${event.id}`,
      notification_id: notificationId,
      msg_id: `msg_${responseId.slice(4)}`,
    },
    now,
  );
}

/** Who responded, as kept on the response row. */
export interface Responder {
  id: string;
  name: string;
  email: string | null;
}

/** The body of a write-back, in the Standard Webhooks shape `{type, timestamp, data}`. */
export function writeBackBody(event: EventRow, response: ResponseRow): string {
  return JSON.stringify({
    type: 'response.created',
    timestamp: iso(response.at),
    data: {
      event_id: event.id,
      source_event_id: event.external_id,
      subject: event.subject,
      action: response.action,
      comment: response.comment,
      responder: JSON.parse(response.responder) as Responder,
      responded_at: iso(response.at),
      notification_id: response.notification_id,
      response_id: response.id,
    },
  });
}

/** Where a write-back goes: the event's own callback URL, else its source's; signed with the source's secret. */
export interface CallbackTarget {
  url: string;
  secret: string;
  body: string;
}

/**
 * The targets of claimed write-backs, by delivery id. A write-back whose response is gone, or whose event and
 * source no longer have a callback URL or secret, gets the reason it cannot be sent instead.
 */
export async function loadCallbackTargets(
  db: Db,
  deliveries: readonly DeliveryRow[],
  events: ReadonlyMap<string, EventRow>,
): Promise<Map<string, CallbackTarget | string>> {
  const out = new Map<string, CallbackTarget | string>();
  const ids = deliveries.filter((d) => d.channel === CALLBACK_CHANNEL).map((d) => d.id);
  if (ids.length === 0) return out;
  const responses = await db.selectFrom('responses').selectAll().where('delivery_id', 'in', ids).execute();
  const sourceIds = [...new Set([...events.values()].map((e) => e.source_id))];
  const sources = new Map(
    (
      await db
        .selectFrom('sources')
        .select(['id', 'callback_url', 'callback_secret'])
        .where('id', 'in', sourceIds)
        .execute()
    ).map((s) => [s.id, s]),
  );
  const byDelivery = new Map(responses.map((r) => [r.delivery_id!, r]));
  for (const id of ids) {
    const response = byDelivery.get(id);
    const event = response && events.get(response.event_id);
    if (response === undefined || event === undefined) {
      out.set(id, 'the response or its event no longer exists');
      continue;
    }
    const source = sources.get(event.source_id);
    const url = event.callback_url ?? source?.callback_url ?? null;
    if (url === null) out.set(id, 'neither the event nor its source has a callback URL');
    else if (!source?.callback_secret) out.set(id, 'the source is gone or has no callback secret');
    else out.set(id, { url, secret: source.callback_secret, body: writeBackBody(event, response) });
  }
  return out;
}

/** How a write-back fared, as notifications and events show it. */
export interface WriteBackStatus {
  delivery_id: string;
  status: DeliveryRow['status'];
  attempts: number;
  last_error: string | null;
}

export function presentWriteBack(row: DeliveryRow): WriteBackStatus {
  return {
    delivery_id: row.id,
    status: row.status,
    attempts: row.attempt_count,
    last_error: row.last_error,
  };
}

/** The write-back deliveries with these ids, by id. */
export async function writeBacks(db: Db, ids: readonly string[]): Promise<Map<string, WriteBackStatus>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('deliveries')
    .selectAll()
    .where('id', 'in', [...ids])
    .execute();
  return new Map(rows.map((r) => [r.id, presentWriteBack(r)]));
}
