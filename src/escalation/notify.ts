import type { Insertable, Transaction } from 'kysely';
import { isUserChannel } from '../channels/registry.ts';
import type { Store } from '../db/engine.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { userDelivery } from '../delivery/fallback.ts';
import { newNotification } from '../notifications/notifications.repo.ts';

/*
 * Notifies people about an event again (an escalation level, a reminder, the overdue notice). One event
 * gives a person one notification, so someone already notified has theirs brought back: retitled, unread,
 * with a new stream position, and its deliveries sent again; anyone else gets a new notification.
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

export async function renotify(
  trx: Transaction<Database>,
  store: Store,
  event: EventRow,
  what: Renotify,
  now: number,
): Promise<Notified> {
  const current = what.users === 'current';
  if (!current && what.users.length === 0) return { users: [], deliveries: 0 };
  const existing = await trx
    .selectFrom('notifications')
    .select(['id', 'user_id', 'channels'])
    .where('event_id', '=', event.id)
    .$if(!current, (qb) => qb.where('user_id', 'in', what.users as readonly string[]))
    .execute();
  const users = current ? existing.map((n) => n.user_id) : [...new Set(what.users as readonly string[])];
  if (users.length === 0) return { users: [], deliveries: 0 };
  const byUser = new Map(existing.map((n) => [n.user_id, n]));
  const used =
    what.channels === 'used' && existing.length > 0
      ? await trx
          .selectFrom('deliveries')
          .select(['notification_id', 'channel'])
          .where(
            'notification_id',
            'in',
            existing.map((n) => n.id),
          )
          .execute()
      : [];
  const seqs = await store.allocateSeq(trx, users.length);
  const deliveries: Insertable<Database['deliveries']>[] = [];
  const created: Insertable<Database['notifications']>[] = [];
  for (const [i, userId] of users.entries()) {
    const seq = seqs + i;
    const found = byUser.get(userId);
    const channels =
      what.channels === 'used'
        ? used.filter((d) => d.notification_id === found?.id).map((d) => d.channel)
        : what.channels.filter(isUserChannel);
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
        seq,
      );
      id = row.id;
      created.push(row);
    } else {
      id = found.id;
      const listed = new Set([...(JSON.parse(found.channels) as string[]), ...channels]);
      await trx
        .updateTable('notifications')
        .set({
          title: what.title,
          state: 'unread',
          read_at: null,
          archived_at: null,
          channels: JSON.stringify([...listed].sort()),
          seq,
          updated_at: now,
        })
        .where('id', '=', found.id)
        .execute();
    }
    for (const channel of channels) {
      const row = userDelivery({ eventId: event.id, notificationId: id, userId, channel, fallback: [], now });
      deliveries.push({ ...row, msg_id: `${row.msg_id}_${what.stepKey}` });
    }
  }
  if (created.length > 0) await trx.insertInto('notifications').values(created).execute();
  for (const d of deliveries) {
    // A delivery still pending will carry the new title anyway; a finished one is sent again.
    await trx
      .insertInto('deliveries')
      .values(d)
      .onConflict((oc) =>
        oc
          .columns(['notification_id', 'channel'])
          .doUpdateSet({
            status: 'pending',
            msg_id: d.msg_id,
            attempt_count: 0,
            next_attempt_at: now,
            locked_until: 0,
            last_error: null,
            last_status_code: null,
            completed_at: null,
            updated_at: now,
          })
          .where('deliveries.status', '!=', 'pending'),
      )
      .execute();
  }
  return { users, deliveries: deliveries.length };
}
