import { Type } from 'typebox';
import { iso } from '../clock.ts';
import type { QueueItemRow } from './queues.repo.ts';

const Time = Type.String({ format: 'date-time' });
const NullableText = Type.Union([Type.String(), Type.Null()]);

export const QueueItemState = Type.Union([Type.Literal('open'), Type.Literal('taken'), Type.Literal('done')]);

/** One shared queue item, as members and admins see it (and as `queue.updated` stream frames carry it). */
export const QueueItem = Type.Object({
  id: Type.String(),
  group_id: Type.String(),
  event_id: Type.String(),
  type: Type.String(),
  severity: Type.String(),
  title: Type.String(),
  summary: NullableText,
  url: NullableText,
  state: QueueItemState,
  taken_by: Type.Union([Type.Object({ id: Type.String(), name: Type.String() }), Type.Null()], {
    description: 'Who took it (or finished it); visible to every member',
  }),
  taken_at: Type.Union([Time, Type.Null()]),
  created_at: Time,
  updated_at: Time,
});

/** A queue the caller belongs to, with how much is waiting in it. */
export const MyQueue = Type.Object({
  id: Type.String(),
  name: Type.String(),
  open: Type.Integer({ description: 'Items nobody has taken yet' }),
  taken: Type.Integer({ description: 'Items someone is working on' }),
});

export function presentQueueItem(row: QueueItemRow) {
  return {
    id: row.id,
    group_id: row.group_id,
    event_id: row.event_id,
    type: row.type,
    severity: row.severity,
    title: row.title,
    summary: row.summary,
    url: row.url,
    state: row.state,
    // A taker removed from the directory since is still shown, by id.
    taken_by: row.taken_by === null ? null : { id: row.taken_by, name: row.taker_name ?? row.taken_by },
    taken_at: iso(row.taken_at),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}
