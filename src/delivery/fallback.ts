import type { Insertable } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { Database, DeliveryRow } from '../db/tables.ts';
import { newDelivery } from './deliveries.repo.ts';

/**
 * A new delivery on the next channel of a fallback chain (`push`, then `email`), for each delivery given up on:
 * dead after its attempts, or never sendable (no device, no address). Runs in the outcome transaction; the
 * unique (notification, channel) key means a chain never sends twice on one channel.
 */
export async function insertFallbacks(trx: Db, dead: readonly DeliveryRow[], now: number): Promise<number> {
  const rows: Insertable<Database['deliveries']>[] = [];
  for (const delivery of dead) {
    if (delivery.fallback === null || delivery.notification_id === null) continue;
    const [next, ...rest] = JSON.parse(delivery.fallback) as string[];
    if (next === undefined) continue;
    rows.push(
      userDelivery({
        eventId: delivery.event_id,
        notificationId: delivery.notification_id,
        userId: delivery.user_id!,
        channel: next,
        fallback: rest,
        now,
      }),
    );
  }
  if (rows.length === 0) return 0;
  const inserted = await trx
    .insertInto('deliveries')
    .values(rows)
    .onConflict((oc) => oc.doNothing())
    .returning('id')
    .execute();
  return inserted.length;
}

/** A pending delivery of a notification on one of its recipient's channels. */
export function userDelivery(args: {
  eventId: string;
  notificationId: string;
  userId: string;
  channel: string;
  fallback: readonly string[];
  now: number;
}): Insertable<Database['deliveries']> {
  return newDelivery(
    {
      event_id: args.eventId,
      channel: args.channel,
      lane: args.channel,
      notification_id: args.notificationId,
      user_id: args.userId,
      fallback: args.fallback.length > 0 ? JSON.stringify(args.fallback) : null,
      msg_id: `msg_${args.notificationId.slice(4)}_${args.channel}`,
    },
    args.now,
  );
}
