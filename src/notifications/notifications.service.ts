import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { NotificationRow, NotificationState } from '../db/tables.ts';
import { notFound } from '../errors.ts';
import { findNotification, markRead, unreadIds, updateState } from './notifications.repo.ts';

/*
 * State changes of inbox items. Each change takes a new stream position (`allocateSeq`) in the transaction
 * that makes it, so real-time streams see it in commit order, and wakes the user's streams after the commit.
 */

const ACTIONS: Record<NotificationState, string> = {
  unread: 'notification.unread',
  read: 'notification.read',
  archived: 'notification.archived',
  resolved: 'notification.resolved',
};

/**
 * Moves one of `userId`'s notifications to `state`; answers 404 for anyone else's. Setting the state it
 * already has changes nothing (no new position, no audit entry), and neither does marking a resolved one read
 * or unread: it stays resolved until archived.
 */
export async function changeState(
  ctx: Context,
  userId: string,
  id: string,
  state: NotificationState,
): Promise<NotificationRow> {
  const { row, changed } = await ctx.store.db.transaction().execute(async (trx) => {
    const before = await findNotification(trx, userId, id);
    if (before === undefined) throw notFound('Notification', id);
    if (unchanged(before, state)) return { row: before, changed: false };
    const seq = await ctx.store.allocateSeq(trx, 1);
    // Read again now that the allocator's lock is held: no other change of this row can be in flight.
    const current = (await findNotification(trx, userId, id)) ?? before;
    // Someone made the same change meanwhile; the position just taken stays unused, a harmless gap.
    if (unchanged(current, state)) return { row: current, changed: false };
    const now = ctx.clock.now();
    const updated = await updateState(trx, current, state, seq, now);
    await appendAudit(trx, {
      at: now,
      actor: `user:${userId}`,
      action: ACTIONS[state],
      subject_type: 'notification',
      subject_id: id,
      data: { from: current.state, to: state },
    });
    return { row: updated ?? current, changed: true };
  });
  if (changed) ctx.store.notifier.publish('inbox', userId);
  return row;
}

const unchanged = (row: NotificationRow, state: NotificationState) =>
  row.state === state || (row.state === 'resolved' && state !== 'archived');

/** Marks every unread notification of `userId` read; returns how many changed. */
export async function markAllRead(ctx: Context, userId: string): Promise<number> {
  const changed = await ctx.store.db.transaction().execute(async (trx) => {
    const ids = await unreadIds(trx, userId);
    if (ids.length === 0) return [];
    const firstSeq = await ctx.store.allocateSeq(trx, ids.length);
    const now = ctx.clock.now();
    // Rows another request changed meanwhile are skipped; their unused positions are harmless gaps.
    const updated = await markRead(trx, userId, ids, firstSeq, now);
    await appendAudit(
      trx,
      updated.map((id) => ({
        at: now,
        actor: `user:${userId}` as const,
        action: ACTIONS.read,
        subject_type: 'notification',
        subject_id: id,
        data: { from: 'unread', to: 'read', all: true },
      })),
    );
    return updated;
  });
  if (changed.length > 0) ctx.store.notifier.publish('inbox', userId);
  return changed.length;
}
