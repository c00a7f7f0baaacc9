import { type Insertable, sql, type Transaction } from 'kysely';
import { isUserChannel } from '../channels/registry.ts';
import { chunks, insertInChunks, writeInChunks } from '../db/bulk.ts';
import type { Store } from '../db/engine.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { userDelivery } from '../delivery/fallback.ts';
import { newNotification } from '../notifications/notifications.repo.ts';

/*
 * Notifies people about events again (escalation levels, reminders, overdue notices), many events in one go.
 * One event gives a person one notification, so someone already notified has theirs brought back: retitled,
 * unread, with a new stream position, and its deliveries sent again; anyone else gets a new notification.
 */

/** Whom to notify, on which channels: a list, or `'used'` for the channels each notification was sent on. */
export interface Renotify {
  /** `'current'`: everyone the event has notified so far. */
  users: readonly string[] | 'current';
  channels: readonly string[] | 'used';
  title: string;
  /** Names this send in message ids, so a provider never takes it for a retry of an earlier one. */
  stepKey: string;
}

/** What to announce after the commit. */
export interface Notified {
  users: string[];
  deliveries: number;
}

/**
 * Notifies again about each event, as its `what` says; returns one {@link Notified} per item, in order. Each
 * event may appear once.
 */
export async function renotify(
  trx: Transaction<Database>,
  store: Store,
  items: readonly { event: EventRow; what: Renotify }[],
  now: number,
): Promise<Notified[]> {
  const wanted = items.filter(({ what }) => what.users === 'current' || what.users.length > 0);
  const existing =
    wanted.length === 0
      ? []
      : await trx
          .selectFrom('notifications')
          .select(['id', 'event_id', 'user_id', 'channels'])
          .where(
            'event_id',
            'in',
            wanted.map((i) => i.event.id),
          )
          .execute();
  const byEvent = Map.groupBy(existing, (n) => n.event_id);
  const plans = items.map(({ event, what }) => {
    const found = byEvent.get(event.id) ?? [];
    const users =
      what.users === 'current' ? found.map((n) => n.user_id) : [...new Set(what.users as readonly string[])];
    return { event, what, users, byUser: new Map(found.map((n) => [n.user_id, n])) };
  });
  const usedBy = await usedChannels(
    trx,
    plans.flatMap((p) => (p.what.channels === 'used' ? [...p.byUser.values()].map((n) => n.id) : [])),
  );
  const total = plans.reduce((sum, p) => sum + p.users.length, 0);
  let seq = total === 0 ? 0 : await store.allocateSeq(trx, total);
  const created: Insertable<Database['notifications']>[] = [];
  const revived: Revived[] = [];
  const deliveries: Insertable<Database['deliveries']>[] = [];
  for (const { event, what, users, byUser } of plans) {
    for (const userId of users) {
      const found = byUser.get(userId);
      const channels = [
        ...new Set(
          what.channels === 'used'
            ? (usedBy.get(found?.id ?? '') ?? [])
            : what.channels.filter(isUserChannel),
        ),
      ];
      let id: string;
      if (found === undefined) {
        const row = newNotification(
          {
            event_id: event.id,
            user_id: userId,
            source_id: event.source_id,
            type: event.type,
            severity: event.severity,
            title: what.title,
            summary: event.summary,
            url: event.url,
            channels: ['inapp', ...channels],
          },
          now,
          seq++,
        );
        id = row.id;
        created.push(row);
      } else {
        id = found.id;
        const listed = new Set([...(JSON.parse(found.channels) as string[]), ...channels]);
        revived.push({
          id,
          title: what.title,
          channels: JSON.stringify([...listed].sort()),
          seq: seq++,
          updated_at: now,
        });
      }
      for (const channel of channels) {
        const row = userDelivery({
          eventId: event.id,
          notificationId: id,
          userId,
          channel,
          fallback: [],
          now,
        });
        deliveries.push({ ...row, msg_id: `${row.msg_id}_${what.stepKey}` });
      }
    }
  }
  await reviveNotifications(trx, revived);
  await insertInChunks(trx, created, (chunk) => trx.insertInto('notifications').values(chunk));
  await resend(trx, deliveries);
  const sent = Map.groupBy(deliveries, (d) => d.event_id);
  return plans.map((p) => ({ users: p.users, deliveries: sent.get(p.event.id)?.length ?? 0 }));
}

/** The channels each notification was delivered on, by notification id. */
async function usedChannels(
  trx: Transaction<Database>,
  notificationIds: string[],
): Promise<Map<string, string[]>> {
  const used = new Map<string, string[]>();
  for (const chunk of chunks(notificationIds)) {
    const rows = await trx
      .selectFrom('deliveries')
      .select(['notification_id', 'channel'])
      .where('notification_id', 'in', chunk)
      .execute();
    for (const d of rows) {
      if (d.notification_id === null) continue;
      const list = used.get(d.notification_id) ?? [];
      list.push(d.channel);
      used.set(d.notification_id, list);
    }
  }
  return used;
}

interface Revived {
  id: string;
  title: string;
  channels: string;
  seq: number;
  updated_at: number;
}

/** Brings notifications back: new title and channels, unread, not archived, at a new stream position. */
async function reviveNotifications(trx: Transaction<Database>, rows: Revived[]): Promise<void> {
  // `update ... from (values ...)` on both engines, as finishAttempts (delivery/deliveries.repo.ts) explains.
  await writeInChunks(trx, rows, (chunk) => {
    const list = chunk.map(
      (r) =>
        sql`(${r.id}, ${r.title}, ${r.channels}, cast(${r.seq} as bigint), cast(${r.updated_at} as bigint))`,
    );
    const update = sql`
      update notifications set title = v.column2, channels = v.column3, seq = v.column4, updated_at = v.column5,
        state = 'unread', read_at = null, archived_at = null
      from (values ${sql.join(list)}) as v
      where notifications.id = v.column1`;
    return { compile: () => update.compile(trx) };
  });
}

/**
 * Inserts the deliveries, or sends again the ones that exist and are over: a delivery still pending will carry
 * the new title anyway.
 */
async function resend(trx: Transaction<Database>, rows: Insertable<Database['deliveries']>[]): Promise<void> {
  for (const chunk of chunks(rows)) {
    await trx
      .insertInto('deliveries')
      .values(chunk)
      .onConflict((oc) =>
        oc
          .columns(['notification_id', 'channel'])
          .doUpdateSet((eb) => ({
            status: 'pending',
            msg_id: eb.ref('excluded.msg_id'),
            attempt_count: 0,
            next_attempt_at: eb.ref('excluded.next_attempt_at'),
            locked_until: 0,
            last_error: null,
            last_status_code: null,
            completed_at: null,
            updated_at: eb.ref('excluded.updated_at'),
          }))
          .where('deliveries.status', '!=', 'pending'),
      )
      .execute();
  }
}
