import type { Db } from '../db/engine.ts';
import { type Notifier, publishIds } from '../db/notifier.ts';
import { expandGroups } from '../directory/groups.repo.ts';
import { presentQueueItem } from './queues.present.ts';
import { queueItemsByIds } from './queues.repo.ts';

/*
 * Queue changes in real time. After the commit that changed items, their ids go out on the notifier's
 * `queues` channel (to every node over PostgreSQL LISTEN/NOTIFY); each node's inbox hub then reads the items
 * and writes a `queue.updated` frame to the open streams of the queue's members. These frames are live only:
 * they carry no SSE `id`, so a reconnecting client's Last-Event-ID still names its last notification, and
 * it refetches its queues (`GET /v1/me/queues/{groupId}/items`) rather than having queue frames replayed.
 */

/** Tells every node these items changed, in payloads small enough for NOTIFY. Call after the commit. */
export function announceQueueItems(notifier: Notifier, itemIds: readonly string[]): void {
  publishIds(notifier, 'queues', itemIds);
}

/** A `queue.updated` frame's data and the members (following nesting) whose streams should get it. */
export interface QueueFrame {
  data: string;
  members: ReadonlySet<string>;
}

/** The frames for changed items: each item as it is now, for the members of its queue. */
export async function queueFrames(db: Db, itemIds: readonly string[]): Promise<QueueFrame[]> {
  const rows = await queueItemsByIds(db, itemIds);
  if (rows.length === 0) return [];
  const members = await expandGroups(
    db,
    rows.map((r) => r.group_id),
  );
  return rows.map((row) => ({
    data: JSON.stringify(presentQueueItem(row)),
    members: members.get(row.group_id) ?? new Set<string>(),
  }));
}
