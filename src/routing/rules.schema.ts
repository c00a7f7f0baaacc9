import { Type } from 'typebox';
import { DirectoryId } from '../directory/users.schema.ts';
import { EscalationFields } from '../escalation/options.ts';
import { Action, Event, ResponsePolicy, SEVERITIES } from '../events/events.schema.ts';
import { RuleNoise } from '../noise/options.ts';
import { EVENT_PATH_REGEX, TYPE_PATTERN_REGEX } from './patterns.ts';
import { Hold, SkippedChannel, Unresolved } from './routing.schema.ts';

/*
 * Request and response schemas of routing rules. They document the API and give Fastify a first check;
 * rules.check.ts checks what a schema cannot (conditions, paths, channels, references).
 */

export const RuleId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });
export const RuleParams = Type.Object({ id: RuleId });

const EventPath = Type.String({
  maxLength: 200,
  pattern: EVENT_PATH_REGEX,
  description: '`subject`, or a path under `data.` such as `data.owner`',
});

export const Match = Type.Object(
  {
    types: Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
      minItems: 1,
      maxItems: 100,
      description: 'Event type patterns; `*` matches any run of characters (`case.*`)',
    }),
    sources: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 }),
    ),
    severities: Type.Optional(Type.Array(Type.Enum(SEVERITIES), { minItems: 1 })),
    subjects: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 500 }), {
        minItems: 1,
        maxItems: 100,
        description: 'Subject patterns; `*` matches any run of characters (`contract-*`)',
      }),
    ),
    condition: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 4000,
        description:
          'A JSONata expression over the event as `GET /v1/events/{id}` shows it (`data.amount > 10000`); ' +
          'the rule applies when it is true. One that fails on an event skips the rule for that event',
      }),
    ),
  },
  { additionalProperties: false },
);

const SegmentValue = Type.Union([Type.String({ maxLength: 1000 }), Type.Number(), Type.Boolean()], {
  description: 'A value, or a path into the event (`data.region`, `subject`) whose value it must equal',
});

export const Segment = Type.Object(
  {
    roles: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        minItems: 1,
        maxItems: 50,
        description: 'Users holding any of these roles',
      }),
    ),
    attributes: Type.Optional(
      Type.Record(Type.String(), SegmentValue, {
        description: 'Users whose attribute equals each value (a list attribute: holds it)',
      }),
    ),
  },
  { additionalProperties: false, description: 'A part of the directory: a role or an attribute at least' },
);

export const Recipients = Type.Object(
  {
    users: Type.Optional(Type.Array(DirectoryId, { maxItems: 1000 })),
    groups: Type.Optional(Type.Array(DirectoryId, { maxItems: 100 })),
    from_data: Type.Optional(
      Type.Array(EventPath, {
        maxItems: 20,
        description: 'Where the event names its recipients, by user id or email',
      }),
    ),
    segments: Type.Optional(Type.Array(Segment, { maxItems: 20 })),
    managers_of: Type.Optional(
      Type.Array(Type.Union([Type.Literal('recipients'), EventPath]), {
        maxItems: 20,
        description:
          'The manager of the user at a path (`data.owner`), or of every user this rule reaches (`recipients`)',
      }),
    ),
  },
  { additionalProperties: false, description: 'At least one user, group, path, segment or manager' },
);

export const ChannelSpec = Type.Union(
  [
    Type.String({ minLength: 1, maxLength: 64, description: '`inapp`, `email`, `push` or `sms`' }),
    Type.Object(
      {
        fallback: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
          minItems: 2,
          maxItems: 3,
          description:
            'Channels tried in turn: the next one only when the one before has no address or fails',
        }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'A channel, or `{"fallback": ["push", "email"]}`' },
);

const Channels = Type.Array(ChannelSpec, { minItems: 1, maxItems: 10 });

const ChannelsBySeverity = Type.Object(
  Object.fromEntries(SEVERITIES.map((s) => [s, Type.Optional(Channels)])),
  {
    additionalProperties: false,
    description:
      'Channels for events of a severity, instead of `channels` (`{"critical": ["inapp", "sms"]}`)',
  },
);

/** Actions a rule gives the events it routes, when an event declares none of its own. */
const RuleActionFields = {
  actions: Type.Optional(
    Type.Array(Action, {
      minItems: 1,
      maxItems: 10,
      description:
        'Actions for the events this rule routes that declare none (approve, reject, acknowledge, ...)',
    }),
  ),
  response_policy: Type.Optional(ResponsePolicy),
};

export const RuleBody = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.Null(), Type.String({ maxLength: 200 })])),
    position: Type.Optional(
      Type.Integer({ minimum: -1_000_000, maximum: 1_000_000, default: 0, description: 'Lower runs first' }),
    ),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    continue: Type.Optional(
      Type.Boolean({
        default: false,
        description: 'When this rule matches, try the rules after it too (by default they are not tried)',
      }),
    ),
    match: Match,
    recipients: Recipients,
    channels: Channels,
    channels_by_severity: Type.Optional(ChannelsBySeverity),
    noise: Type.Optional(RuleNoise),
    ...EscalationFields,
    ...RuleActionFields,
  },
  { additionalProperties: false },
);

export const RuleShape = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  position: Type.Integer(),
  enabled: Type.Boolean(),
  continue: Type.Boolean(),
  match: Match,
  recipients: Recipients,
  channels: Type.Array(ChannelSpec),
  channels_by_severity: Type.Optional(ChannelsBySeverity),
  noise: Type.Optional(RuleNoise),
  ...EscalationFields,
  ...RuleActionFields,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const Via = Type.Array(Type.String(), {
  description: 'The routes that reach them: `recipients`, `rule:<id>`, `subscription:<id>`',
});

/** `POST /v1/routing/explain`: how an event would be routed now (routing/explain.ts). */
export const Explanation = Type.Object({
  event: Type.Omit(Event, ['id', 'source_event_id', 'status', 'received_at'], {
    description: 'The event as it would be stored',
  }),
  rules: Type.Array(
    Type.Object({
      rule: Type.String(),
      name: Type.Union([Type.String(), Type.Null()]),
      position: Type.Integer(),
      continue: Type.Boolean(),
      matched: Type.Boolean(),
      reason: Type.Optional(
        Type.String({
          description:
            'Why it did not match: `type`, `source`, `severity`, `subject`, `condition_false`, ' +
            '`condition_error`, `stopped` or `disabled`',
        }),
      ),
      detail: Type.String(),
    }),
    { description: 'Every rule, disabled ones too, in order' },
  ),
  subscriptions_matched: Type.Array(Type.String()),
  recipient_count: Type.Integer(),
  recipients: Type.Array(
    Type.Object({
      user_id: Type.String(),
      notified: Type.Boolean({ description: 'False when noise control would hold it back now (`held`)' }),
      channels: Type.Array(Type.String()),
      via: Via,
      channels_skipped: Type.Array(SkippedChannel),
      held: Type.Optional(Hold),
    }),
    { description: 'The first 1,000 people it would reach' },
  ),
  queues: Type.Array(
    Type.Object({
      group_id: Type.String(),
      item_id: Type.Null({ description: 'Nothing is stored, so there is no item yet' }),
      via: Via,
    }),
  ),
  unresolved: Type.Array(Unresolved),
  endpoints: Type.Array(Type.String(), { description: 'The webhook and chat endpoints it would go to' }),
});
