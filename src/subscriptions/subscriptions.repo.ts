import { IDS_PER_LIST } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow, SubscriptionRow } from '../db/tables.ts';
import { matchesAnyType } from '../routing/patterns.ts';

/** What a user follows: every condition given holds for an event (at least one is given). */
export interface Following {
  /** Event type patterns. */
  types: string[] | null;
  source: string | null;
  subject: string | null;
}

/** A user following something, parsed; `channels` are those besides the inbox. */
export interface Subscription extends Following {
  id: string;
  userId: string;
  channels: string[];
  createdAt: number;
}

function parse(row: SubscriptionRow): Subscription {
  return {
    id: row.id,
    userId: row.user_id,
    types: row.types === null ? null : (JSON.parse(row.types) as string[]),
    source: row.source_id,
    subject: row.subject,
    channels: JSON.parse(row.channels) as string[],
    createdAt: row.created_at,
  };
}

/** Stores a new subscription. */
export async function insertSubscription(db: Db, sub: Subscription): Promise<void> {
  await db
    .insertInto('subscriptions')
    .values({
      id: sub.id,
      user_id: sub.userId,
      types: sub.types === null ? null : JSON.stringify(sub.types),
      source_id: sub.source,
      subject: sub.subject,
      channels: JSON.stringify(sub.channels),
      created_at: sub.createdAt,
    })
    .execute();
}

/** A user's subscriptions, oldest first. */
export async function listSubscriptions(db: Db, userId: string): Promise<Subscription[]> {
  const rows = await db
    .selectFrom('subscriptions')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
  return rows.map(parse);
}

/** Deletes one of a user's subscriptions; returns whether it existed. */
export async function deleteSubscription(db: Db, userId: string, id: string): Promise<boolean> {
  const result = await db
    .deleteFrom('subscriptions')
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/**
 * The subscriptions that may apply to a batch of events, in one query (a few when the batch names very many
 * subjects): those following one of the batch's subjects or sources, and those following event types only.
 */
export async function subscriptionsForBatch(db: Db, events: readonly EventRow[]): Promise<Subscription[]> {
  const subjects = [...new Set(events.flatMap((e) => (e.subject === null ? [] : [e.subject])))];
  const sources = [...new Set(events.map((e) => e.source_id))];
  const out = new Map<string, Subscription>();
  // The first query also takes the source and type-only subscriptions; any further ones only more subjects.
  for (let i = 0; i === 0 || i < subjects.length; i += IDS_PER_LIST) {
    const chunk = subjects.slice(i, i + IDS_PER_LIST);
    const rows = await db
      .selectFrom('subscriptions')
      .selectAll()
      .where((eb) => {
        const any = chunk.length > 0 ? [eb('subject', 'in', chunk)] : [];
        if (i === 0) {
          any.push(eb.and([eb('subject', 'is', null), eb('source_id', 'in', sources)]));
          any.push(eb.and([eb('subject', 'is', null), eb('source_id', 'is', null)]));
        }
        return eb.or(any);
      })
      .execute();
    for (const row of rows) out.set(row.id, parse(row));
  }
  return [...out.values()];
}

/** Whether a subscription follows this event: its types (when given), source and subject all hold. */
export function subscriptionMatches(sub: Following, event: EventRow): boolean {
  if (sub.subject !== null && sub.subject !== event.subject) return false;
  if (sub.source !== null && sub.source !== event.source_id) return false;
  return sub.types === null || matchesAnyType(sub.types, event.type);
}
