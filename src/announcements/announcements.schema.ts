import { type Static, Type } from 'typebox';
import { iso } from '../clock.ts';
import type { AnnouncementRow } from '../db/tables.ts';
import { DirectoryId } from '../directory/users.schema.ts';
import { SEVERITIES } from '../events/events.schema.ts';
import type { Audience as AudienceValue } from './audience.ts';

/** A segment of the directory; see {@link AudienceValue} for how the criteria combine. */
export const Audience = Type.Object(
  {
    everyone: Type.Optional(Type.Literal(true, { description: 'Every user; combines with nothing else' })),
    groups: Type.Optional(
      Type.Array(DirectoryId, {
        minItems: 1,
        maxItems: 100,
        uniqueItems: true,
        description: 'Members of any of these groups',
      }),
    ),
    users: Type.Optional(
      Type.Array(DirectoryId, {
        minItems: 1,
        maxItems: 10_000,
        uniqueItems: true,
        description: 'These users (in addition to the groups)',
      }),
    ),
    roles: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
        minItems: 1,
        maxItems: 50,
        uniqueItems: true,
        description: 'Only users holding any of these roles',
      }),
    ),
    attributes: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_-]*$', maxLength: 100 }),
        Type.Union([Type.String({ maxLength: 500 }), Type.Number(), Type.Boolean()]),
        {
          minProperties: 1,
          maxProperties: 20,
          description:
            'Only users whose attributes equal every one of these (a list attribute must contain the value)',
        },
      ),
    ),
  },
  {
    additionalProperties: false,
    description:
      '`{"everyone": true}`, or the people named by `groups` and `users` (everyone when neither is given), ' +
      'narrowed by `roles` and `attributes`, e.g. `{"roles": ["finance"], "attributes": {"location": "ZRH"}}`',
  },
);

const Severity = Type.Union(
  SEVERITIES.map((s) => Type.Literal(s)),
  { default: 'info' },
);
const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);

export const AnnouncementBody = Type.Object(
  {
    audience: Audience,
    title: Type.String({ minLength: 1, maxLength: 500 }),
    body: Type.String({ minLength: 1, maxLength: 5000 }),
    url: Type.Optional(Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' })),
    severity: Type.Optional(Severity),
    publish_at: Type.Optional(Type.String({ format: 'date-time', description: 'Default: now' })),
    expires_at: Type.Optional(
      Type.String({ format: 'date-time', description: 'When it leaves inboxes; after publish_at' }),
    ),
  },
  { additionalProperties: false },
);
export type AnnouncementBody = Static<typeof AnnouncementBody>;

export const Status = Type.Union([
  Type.Literal('scheduled'),
  Type.Literal('publishing'),
  Type.Literal('published'),
  Type.Literal('expired'),
  Type.Literal('cancelled'),
]);

export const Announcement = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  status: Status,
  audience: Audience,
  title: Type.String(),
  body: Type.String(),
  url: Type.Union([Type.String(), Type.Null()]),
  severity: Type.String(),
  publish_at: Time,
  expires_at: NullableTime,
  progress: Type.Object({
    total: Type.Integer({
      description: 'Audience size: an estimate until publishing starts, then counted',
    }),
    delivered: Type.Integer({ description: 'Notifications created so far' }),
    removed: Type.Integer({ description: 'Notifications taken out of inboxes once cancelled or expired' }),
  }),
  created_at: Time,
  updated_at: Time,
  published_at: NullableTime,
  ended_at: NullableTime,
});

/** Turns an `announcements` row into its public shape. */
export function presentAnnouncement(row: AnnouncementRow): Static<typeof Announcement> {
  return {
    id: row.id,
    event_id: row.event_id,
    status: row.status,
    audience: JSON.parse(row.audience) as AudienceValue,
    title: row.title,
    body: row.body,
    url: row.url,
    severity: row.severity,
    publish_at: iso(row.publish_at),
    expires_at: iso(row.expires_at),
    progress: { total: row.total, delivered: row.delivered, removed: row.removed },
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    published_at: iso(row.published_at),
    ended_at: iso(row.ended_at),
  };
}
