import type { Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { Context } from '../context.ts';
import { publishIds } from '../db/notifier.ts';
import type { Database, EventRow, NotificationRow, ResponseRow } from '../db/tables.ts';
import { findUser } from '../directory/users.repo.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import { stopEscalation } from '../escalation/stop.ts';
import { newId } from '../ids.ts';
import { findNotification } from '../notifications/notifications.repo.ts';
import { announceQueueItems } from '../queues/queues.live.ts';
import { finishQueueItemsOfEvents } from '../queues/queues.repo.ts';
import { actionsOf, closes, policyOf } from './policy.ts';
import {
  closeEvent,
  countNotificationsOfEvent,
  insertResponse,
  lockEvent,
  openNotificationsOfEvents,
  resolveNotifications,
  responseOfNotification,
  responsesOfEvent,
} from './responses.repo.ts';
import { newWriteBack, type Responder } from './writeback.ts';

/** Where a response came from. */
export type Via = 'api' | 'link' | 'slack';

export interface RespondInput {
  userId: string;
  notificationId: string;
  action: string;
  comment: string | null;
  via: Via;
}

export interface Responded {
  /** False when this repeated the user's earlier response (nothing changed). */
  created: boolean;
  response: ResponseRow;
  notification: NotificationRow;
}

/**
 * Records a recipient's response to a notification, in one transaction: the response row, the write-back
 * delivery, the new state of this notification and, when the response policy says the event is now closed,
 * of every other recipient's ("handled by ...") and of its shared queue items, the audit entries and the end
 * of the event's escalation.
 * Repeating one's own response answers it again; any other response to a closed event is `already_responded`.
 */
export async function respond(ctx: Context, input: RespondInput): Promise<Responded> {
  const { store, clock } = ctx;
  const result = await store.db.transaction().execute(async (trx) => {
    const found = await findNotification(trx, input.userId, input.notificationId);
    if (found === undefined) throw notFound('Notification', input.notificationId);
    const event = await lockEvent(trx, found.event_id);
    if (event === undefined) throw notFound('Notification', input.notificationId);
    if (found.actionable === 0) {
      throw new HeraldError(
        'forbidden',
        'This notification keeps you informed; only the people the event was sent to can respond to it',
      );
    }
    const offered = actionsOf(event);
    const action = offered.find((a) => a.id === input.action);
    if (action === undefined) {
      const ids = offered.map((a) => a.id);
      throw new HeraldError(
        'unknown_action',
        ids.length === 0
          ? 'This notification offers no actions'
          : `"${input.action}" is not one of this notification's actions: ${ids.join(', ')}`,
        { extra: { actions: ids } },
      );
    }
    const comment = input.comment?.trim() || null;
    if (action.comment === 'required' && comment === null) {
      throw invalid('body.comment', `is required for "${action.id}"`);
    }
    const own = await responseOfNotification(trx, found.id);
    if (own !== undefined) {
      if (own.action === input.action) {
        const current = (await findNotification(trx, input.userId, found.id)) ?? found;
        const unchanged = { users: [], delivery: false, queued: [] };
        return { created: false, response: own, notification: current, ...unchanged };
      }
      throw await alreadyResponded(trx, event);
    }
    if (event.resolution !== null) throw await alreadyResponded(trx, event);

    const now = clock.now();
    const user = await findUser(trx, input.userId);
    const responder: Responder = {
      id: input.userId,
      name: user?.name ?? input.userId,
      email: user?.email ?? null,
    };
    const response: ResponseRow = {
      id: newId('rsp', now),
      event_id: event.id,
      notification_id: found.id,
      user_id: input.userId,
      action: action.id,
      comment,
      responder: JSON.stringify(responder),
      via: input.via,
      at: now,
      delivery_id: null,
    };
    if (await hasCallback(trx, event)) {
      const delivery = newWriteBack({
        id: newId('dlv', now),
        event,
        notificationId: found.id,
        responseId: response.id,
        now,
      });
      await trx.insertInto('deliveries').values(delivery).execute();
      response.delivery_id = delivery.id;
    }
    await insertResponse(trx, response);

    const shown = JSON.stringify({
      action: action.id,
      comment,
      by: { id: responder.id, name: responder.name },
      at: iso(now),
    });
    const responses = await responsesOfEvent(trx, event.id);
    const closing = closes(policyOf(event), responses.length, await countNotificationsOfEvent(trx, event.id));
    const others = closing
      ? (await openNotificationsOfEvents(trx, [event.id])).filter((n) => n.id !== found.id)
      : [];
    const first = await store.allocateSeq(trx, 1 + others.length);
    const users = await resolveNotifications(
      trx,
      [found.id],
      { response: shown, resolvedBy: responder.name },
      first,
      now,
    );
    const names = [...new Set(responses.map((r) => (JSON.parse(r.responder) as Responder).name))];
    users.push(
      ...(await resolveNotifications(
        trx,
        others.map((n) => n.id),
        { response: shown, resolvedBy: names.join(', ') },
        first + 1,
        now,
      )),
    );
    await appendAudit(trx, {
      at: now,
      actor: `user:${input.userId}`,
      action: 'notification.responded',
      subject_type: 'notification',
      subject_id: found.id,
      data: {
        event_id: event.id,
        action: action.id,
        comment,
        via: input.via,
        response_id: response.id,
        write_back: response.delivery_id,
      },
    });
    if (closing) {
      await closeEvent(trx, event.id, 'responded', `user:${input.userId}`, now);
      await appendAudit(trx, {
        at: now,
        actor: `user:${input.userId}`,
        action: 'event.responded',
        subject_type: 'event',
        subject_id: event.id,
        data: { responses: responses.length, notifications_resolved: others.length + 1 },
      });
      await stopEscalation(trx, event.id, now, 'responded');
    }
    // Answered: the event's shared queue items are done too, handled by this responder.
    const queued = closing ? await finishQueueItemsOfEvents(trx, [event.id], now, input.userId) : [];
    const notification = (await findNotification(trx, input.userId, found.id)) ?? found;
    const delivery = response.delivery_id !== null;
    return { created: true, response, notification, users, delivery, queued };
  });
  if (result.users.length > 0) publishIds(store.notifier, 'inbox', new Set(result.users));
  if (result.delivery) store.notifier.publish('deliveries', '');
  announceQueueItems(store.notifier, result.queued);
  return { created: result.created, response: result.response, notification: result.notification };
}

async function hasCallback(trx: Transaction<Database>, event: EventRow): Promise<boolean> {
  if (event.callback_url !== null) return true;
  const source = await trx
    .selectFrom('sources')
    .select('callback_url')
    .where('id', '=', event.source_id)
    .executeTakeFirst();
  return (source?.callback_url ?? null) !== null;
}

/** The 409 for a response that comes too late (or changes one's own): it names who responded and how. */
export async function alreadyResponded(trx: Transaction<Database>, event: EventRow): Promise<HeraldError> {
  const responses = await responsesOfEvent(trx, event.id);
  const responded = responses.map((r) => ({
    ...(JSON.parse(r.responder) as Responder),
    action: r.action,
    at: iso(r.at),
  }));
  if (responded.length === 0 && event.resolved_by !== null) {
    return new HeraldError(
      'already_responded',
      `The event was ${event.resolution} by ${event.resolved_by.replace(/^source:/, 'source ')}`,
      { extra: { resolution: event.resolution, resolved_by: event.resolved_by, responded_by: [] } },
    );
  }
  const who = responded.map((r) => `${r.name} (${r.action})`).join(', ');
  return new HeraldError('already_responded', `Already handled by ${who}`, {
    extra: { resolution: event.resolution, responded_by: responded },
  });
}
