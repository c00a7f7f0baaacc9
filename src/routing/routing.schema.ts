import { Type } from 'typebox';

/*
 * Response shapes of routing decisions: the parts the explain API and an event's recorded decision share, and
 * the decision as recorded (`routing` on `GET /v1/events/{id}`). Objects read back from stored JSON stay open
 * (`additionalProperties`), so nothing recorded is left out of an answer.
 */

const Open = { additionalProperties: true } as const;
const Time = Type.String({ format: 'date-time' });
const Ids = Type.Array(Type.String());

/** Why a recipient gets no notification now (noise control); `until` when quiet hours will let it through. */
export const Hold = Type.Object(
  {
    reason: Type.String({
      description:
        '`silenced`, `inhibited`, `deduplicated`, `grouped`, `digest`, `throttled`, `quiet_hours`...',
    }),
    until: Type.Optional(Time),
    detail: Type.Optional(Type.String()),
  },
  Open,
);

/** A reference that leads to nobody. */
export const Unresolved = Type.Object(
  {
    kind: Type.String({ description: '`user`, `group`, `data`, `segment` or `manager`' }),
    ref: Type.String(),
    via: Type.String({ description: 'The route that named it: `recipients`, `rule:<id>`, ...' }),
    reason: Type.String(),
  },
  Open,
);

/** A channel a recipient does not get, and why (a preference turned it off). */
export const SkippedChannel = Type.Object({ channel: Type.String(), reason: Type.String() }, Open);

const Via = Type.Array(Type.String(), {
  description: 'The routes that reached them: `recipients`, `rule:<id>`, `subscription:<id>`',
});

/**
 * The routing decision recorded when an event was routed. Every field is optional: a decision is kept as it was
 * recorded, and an announcement's event records only `recipient_count`, `via` and `audience`.
 */
export const RoutingSummary = Type.Object(
  {
    recipient_count: Type.Optional(Type.Integer()),
    recipients: Type.Optional(
      Type.Array(
        Type.Object(
          {
            user_id: Type.Optional(Type.String()),
            channels: Type.Optional(Ids),
            via: Type.Optional(Via),
            held: Type.Optional(Hold),
          },
          Open,
        ),
        { description: 'The first 200 recipients' },
      ),
    ),
    held_count: Type.Optional(Type.Integer({ description: 'Recipients noise control held back' })),
    queues: Type.Optional(
      Type.Array(
        Type.Object(
          {
            group_id: Type.Optional(Type.String()),
            item_id: Type.Optional(Type.String()),
            via: Type.Optional(Via),
          },
          Open,
        ),
      ),
    ),
    unresolved: Type.Optional(Type.Array(Unresolved)),
    unresolved_count: Type.Optional(Type.Integer()),
    rules_matched: Type.Optional(Ids),
    rules_skipped: Type.Optional(
      Type.Array(
        Type.Object(
          {
            rule: Type.Optional(Type.String()),
            reason: Type.Optional(Type.String()),
            error: Type.Optional(Type.String()),
          },
          Open,
        ),
        { description: 'Rules of the type that did not match, and why (those of other types are counted)' },
      ),
    ),
    rules_type_mismatch: Type.Optional(Type.Integer()),
    stopped_by: Type.Optional(
      Type.Union([Type.String(), Type.Null()], { description: 'The rule after which no more were tried' }),
    ),
    rules_not_tried: Type.Optional(Type.Integer()),
    subscriptions_matched: Type.Optional(Ids),
    endpoints: Type.Optional(Ids),
    channels_skipped: Type.Optional(
      Type.Array(
        Type.Object(
          {
            user_id: Type.Optional(Type.String()),
            channel: Type.Optional(Type.String()),
            reason: Type.Optional(Type.String()),
          },
          Open,
        ),
      ),
    ),
    closed: Type.Optional(
      Type.Object(
        {
          resolution: Type.Optional(Type.String()),
          by: Type.Optional(Type.Union([Type.String(), Type.Null()])),
          notified: Type.Optional(Type.Boolean()),
          escalated: Type.Optional(Type.Boolean()),
        },
        { ...Open, description: 'Set when the source closed the event before it was routed' },
      ),
    ),
    noise: Type.Optional(
      Type.Object(
        {},
        {
          ...Open,
          description:
            'What noise control did: `silenced_by`, `inhibited_by`, `deduplicated_into`, `grouped`, `digest`, ' +
            '`throttled`, `deferred` (per recipient, with `<key>_count`), inhibitions opened, parents resolved',
        },
      ),
    ),
    via: Type.Optional(Type.String({ description: 'An announcement: `announcement:<id>`' })),
    audience: Type.Optional(Type.Unknown({ description: "An announcement's audience" })),
  },
  Open,
);
