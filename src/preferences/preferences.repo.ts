import type { Db } from '../db/engine.ts';
import { matchesAnyType } from '../routing/patterns.ts';

/** One choice of a user: a category (event type pattern) on a channel, on or off. */
export interface Preference {
  category: string;
  channel: string;
  enabled: boolean;
}

/** A user's preferences, by category then channel (sorted here: the engines' collations disagree on `*`). */
export async function listPreferences(db: Db, userId: string): Promise<Preference[]> {
  const rows = await db
    .selectFrom('preferences')
    .select(['category', 'channel', 'enabled'])
    .where('user_id', '=', userId)
    .execute();
  return rows
    .map((r) => ({ category: r.category, channel: r.channel, enabled: r.enabled === 1 }))
    .sort((a, b) => compare(a.category, b.category) || compare(a.channel, b.channel));
}

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** Replaces a user's preferences with `list`. */
export async function replacePreferences(
  db: Db,
  userId: string,
  list: Preference[],
  now: number,
): Promise<void> {
  await db.deleteFrom('preferences').where('user_id', '=', userId).execute();
  if (list.length === 0) return;
  await db
    .insertInto('preferences')
    .values(
      list.map((p) => ({
        user_id: userId,
        category: p.category,
        channel: p.channel,
        enabled: p.enabled ? 1 : 0,
        updated_at: now,
      })),
    )
    .execute();
}

/** Sets one preference (the one-click unsubscribe). */
export async function setPreference(db: Db, userId: string, pref: Preference, now: number): Promise<void> {
  const values = {
    user_id: userId,
    category: pref.category,
    channel: pref.channel,
    enabled: pref.enabled ? 1 : 0,
    updated_at: now,
  };
  await db
    .insertInto('preferences')
    .values(values)
    .onConflict((oc) =>
      oc
        .columns(['user_id', 'category', 'channel'])
        .doUpdateSet({ enabled: values.enabled, updated_at: now }),
    )
    .execute();
}

/**
 * Who has turned what off, for a batch of recipients: `optedOut(user, type, channel)` answers whether the most
 * specific preference for the event type on that channel is off (an exact category beats a pattern; `*` on
 * the channel `*` is "everything").
 */
export async function loadOptOuts(db: Db, userIds: readonly string[]) {
  const rows =
    userIds.length === 0
      ? []
      : await db
          .selectFrom('preferences')
          .select(['user_id', 'category', 'channel', 'enabled'])
          .where('user_id', 'in', [...userIds])
          .execute();
  const byUser = Map.groupBy(rows, (r) => r.user_id);
  return (userId: string, type: string, channel: string): boolean => {
    const mine = byUser.get(userId);
    if (mine === undefined) return false;
    const fitting = mine
      .filter((p) => (p.channel === channel || p.channel === '*') && matchesAnyType([p.category], type))
      .sort((a, b) => specificity(b.category, b.channel) - specificity(a.category, a.channel));
    return fitting.length > 0 && fitting[0]!.enabled === 0;
  };
}

function specificity(category: string, channel: string): number {
  return (
    (category.includes('*') ? 0 : 10_000) +
    category.replaceAll('*', '').length * 2 +
    (channel === '*' ? 0 : 1)
  );
}
