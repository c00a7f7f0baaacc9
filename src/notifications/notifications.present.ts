import { type Static, Type } from 'typebox';
import { iso } from '../clock.ts';
import type { DeliveryRow, NotificationRow } from '../db/tables.ts';

/** The states a user can put a notification in. */
export const State = Type.Union([Type.Literal('unread'), Type.Literal('read'), Type.Literal('archived')]);
/** The states a notification can be in: a user's, or `resolved` once someone responded or the source closed it. */
export const ShownState = Type.Union([...State.anyOf, Type.Literal('resolved')]);

const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);
const NullableText = Type.Union([Type.String(), Type.Null()]);

/** A recipient's response to an actionable notification. */
export const ActionResponse = Type.Object({
  action: Type.String(),
  comment: NullableText,
  by: Type.Object({ id: Type.String(), name: Type.String() }),
  at: Time,
});

/** How a response was written back to its source: the state of its `callback` delivery. */
export const WriteBack = Type.Object({
  delivery_id: Type.String(),
  status: Type.Union([
    Type.Literal('pending'),
    Type.Literal('succeeded'),
    Type.Literal('dead'),
    Type.Literal('cancelled'),
  ]),
  attempts: Type.Integer(),
  last_error: NullableText,
});

/** One inbox item as the API and the real-time stream show it. */
export const Notification = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  type: Type.String(),
  source: Type.String(),
  severity: Type.String(),
  title: Type.String(),
  summary: NullableText,
  url: NullableText,
  state: ShownState,
  channels: Type.Array(Type.String()),
  occurrences: Type.Integer({
    description: 'How many events this notification stands for (raised by dedup_key repeats)',
  }),
  data: Type.Union([Type.Unknown(), Type.Null()], {
    description: "The latest event's data, or the members of a group, digest or throttle summary",
  }),
  created_at: Time,
  updated_at: Time,
  read_at: NullableTime,
  archived_at: NullableTime,
  response: Type.Union([ActionResponse, Type.Null()], {
    description: "This recipient's response, or the one that closed the event for everyone",
  }),
  actions: Type.Optional(
    Type.Array(
      Type.Object({
        id: Type.String(),
        label: Type.String(),
        comment: Type.Optional(Type.String()),
        confirm: Type.Optional(Type.String()),
      }),
      { description: 'What the recipient can respond with (`POST .../actions/{action}`)' },
    ),
  ),
  write_back: Type.Optional(
    Type.Union([WriteBack, Type.Null()], {
      description: 'How the response that resolved it was written back to the source',
    }),
  ),
  resolved_at: NullableTime,
  resolved_by: Type.Union([Type.String(), Type.Null()], {
    description: 'Who handled it ("handled by ..."): the responder\'s name, or `source:<id>`',
  }),
});
export type Notification = Static<typeof Notification>;

/** Turns a `notifications` row into its public shape. */
export function presentNotification(row: NotificationRow): Notification {
  return {
    id: row.id,
    event_id: row.event_id,
    type: row.type,
    source: row.source_id,
    severity: row.severity,
    title: row.title,
    summary: row.summary,
    url: row.url,
    state: row.state,
    channels: JSON.parse(row.channels) as string[],
    occurrences: row.occurrences,
    data: row.data === null ? null : (JSON.parse(row.data) as unknown),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    read_at: iso(row.read_at),
    archived_at: iso(row.archived_at),
    response: row.response === null ? null : (JSON.parse(row.response) as Static<typeof ActionResponse>),
    resolved_at: iso(row.resolved_at),
    resolved_by: row.resolved_by,
  };
}

/**
 * How a notification fared on one channel: `queued`, `sent` (accepted by the provider), `delivered` (the provider
 * reported it handed to the device: SMS delivery receipts), `failed` or `skipped`.
 */
export const ChannelStatus = Type.Object({
  channel: Type.String(),
  status: Type.Union([
    Type.Literal('queued'),
    Type.Literal('sent'),
    Type.Literal('delivered'),
    Type.Literal('failed'),
    Type.Literal('skipped'),
  ]),
  attempts: Type.Integer(),
  last_error: NullableText,
  updated_at: Time,
});

export const NotificationWithDeliveries = Type.Object({
  ...Notification.properties,
  deliveries: Type.Array(ChannelStatus),
});

const CHANNEL_STATUS = {
  pending: 'queued',
  succeeded: 'sent',
  dead: 'failed',
  cancelled: 'skipped',
} as const;

export function presentChannelStatus(row: DeliveryRow): Static<typeof ChannelStatus> {
  return {
    channel: row.channel,
    status:
      row.status === 'succeeded' && row.delivered_at !== null ? 'delivered' : CHANNEL_STATUS[row.status],
    attempts: row.attempt_count,
    last_error: row.last_error,
    updated_at: iso(row.updated_at),
  };
}
