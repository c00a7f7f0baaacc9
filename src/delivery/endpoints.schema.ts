import { Type } from 'typebox';
import { PageQuery } from '../http/pagination.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';

/** Endpoint ids: chosen by the admin, short, readable and URL-safe. */
export const EndpointId = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  description: 'Letters, digits, `.`, `_`, `-`; starts with a letter or digit',
});

export const EndpointKind = Type.Union(
  [Type.Literal('webhook'), Type.Literal('slack'), Type.Literal('teams')],
  {
    description:
      '`webhook` (signed Standard Webhooks POST, the default), `slack` (incoming webhook, Block Kit) or `teams` (Workflows webhook, Adaptive Card)',
  },
);

export const EndpointParams = Type.Object({ id: EndpointId });
export const DeliveryParams = Type.Object({
  id: EndpointId,
  deliveryId: Type.String({ minLength: 1, maxLength: 100 }),
});

export const EndpointPut = Type.Object(
  {
    url: Type.String({
      minLength: 1,
      maxLength: 2048,
      description:
        'An http or https URL; redirects are not followed. A Slack or Teams URL as reads show it (`https://hooks.slack.com/********`) keeps the stored one',
    }),
    types: Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
      minItems: 1,
      maxItems: 100,
      description: 'Event type patterns to send here; `*` matches any run of characters (`case.*`, `*`)',
    }),
    description: Type.Optional(Type.Union([Type.Null(), Type.String({ maxLength: 1000 })])),
    secret: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 200,
        description:
          'Standard Webhooks signing secret, `whsec_` + base64 of 24 to 64 bytes; generated when the endpoint is created without one; omitted or `"********"` keeps the stored one',
      }),
    ),
    enabled: Type.Optional(Type.Boolean({ description: 'false pauses the endpoint; true re-enables it' })),
    kind: Type.Optional(EndpointKind),
    filter: Type.Optional(
      Type.Union([
        Type.Null(),
        Type.String({
          minLength: 1,
          maxLength: 4000,
          description:
            'JSONata expression over the webhook payload (`{type, timestamp, data}`); the event is sent when it is truthy. Example: `data.severity in ["error", "critical"] and data.data.region = "EU"`',
        }),
      ]),
    ),
    transform: Type.Optional(
      Type.Union([
        Type.Null(),
        Type.String({
          minLength: 1,
          maxLength: 20000,
          description:
            'JSONata expression whose result is sent as the body instead of the webhook payload (webhook endpoints only). Example: `{"short_description": data.title, "urgency": data.severity = "critical" ? 1 : 3}`',
        }),
      ]),
    ),
    headers: Type.Optional(
      Type.Record(
        Type.String({ pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$" }),
        Type.String({ maxLength: 2000 }),
        {
          maxProperties: 20,
          description:
            'Extra request headers; the signature headers and Content-Type cannot be replaced. A value of `"********"` keeps the stored value of that header while the URL stays the same',
        },
      ),
    ),
    payload: Type.Optional(
      Type.Union([Type.Literal('full'), Type.Literal('thin')], {
        description: '`thin` sends only the event id, type, source, subject, time and severity',
      }),
    ),
    rate_limit: Type.Optional(
      Type.Union([
        Type.Null(),
        Type.Integer({ minimum: 1, maximum: 10000, description: 'Most requests per second' }),
      ]),
    ),
    ordered: Type.Optional(
      Type.Boolean({
        description:
          'Deliver one at a time, oldest first; a delivery waiting for a retry holds back the rest',
      }),
    ),
  },
  { additionalProperties: false },
);

const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);
const NullableString = Type.Union([Type.String(), Type.Null()]);
const NullableInteger = Type.Union([Type.Integer(), Type.Null()]);

export const Endpoint = Type.Object({
  id: Type.String(),
  kind: EndpointKind,
  url: Type.String({
    description:
      'A Slack or Teams URL (itself a credential) shows only its scheme and host: `https://hooks.slack.com/********`',
  }),
  description: NullableString,
  types: Type.Array(Type.String()),
  secret: Type.String({
    description:
      'The signing secret (`whsec_...`) in the answer that created or set it; `"********"` elsewhere (see `GET /v1/endpoints/{id}/secret`)',
  }),
  status: Type.Union([Type.Literal('enabled'), Type.Literal('disabled')]),
  disabled_reason: Type.Union([
    Type.String({ description: '`gone` (410), `receiver_requested`, `failing` (circuit breaker), `manual`' }),
    Type.Null(),
  ]),
  filter: NullableString,
  transform: NullableString,
  headers: Type.Record(Type.String(), Type.String(), {
    description: 'Header names; every value reads `"********"`',
  }),
  payload: Type.Union([Type.Literal('full'), Type.Literal('thin')]),
  rate_limit: NullableInteger,
  ordered: Type.Boolean(),
  circuit: Type.Object({
    state: Type.Union([
      Type.Literal('closed'),
      Type.Literal('failing'),
      Type.Literal('paused'),
      Type.Literal('probing'),
    ]),
    failures: Type.Integer({ description: 'Consecutive failed attempts' }),
    failing_since: NullableTime,
    paused_until: NullableTime,
  }),
  created_at: Time,
  updated_at: Time,
});

/** An endpoint's signing secret, revealed on purpose. */
export const EndpointSecret = Type.Object({
  secret: Type.String({
    description: 'The Standard Webhooks signing secret (`whsec_...`) receivers verify with',
  }),
});

export const DeliveryStatus = Type.Union([
  Type.Literal('pending'),
  Type.Literal('succeeded'),
  Type.Literal('dead'),
  Type.Literal('cancelled'),
]);

export const Attempt = Type.Object({
  id: Type.String(),
  attempted_at: Time,
  trigger: Type.Union([Type.Literal('scheduled'), Type.Literal('manual')]),
  outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('retry'), Type.Literal('failed')]),
  status_code: NullableInteger,
  latency_ms: Type.Integer(),
  response: Type.Union([Type.String({ description: 'The first 2 KiB of the response body' }), Type.Null()]),
  error: NullableString,
  provider_id: Type.Union([
    Type.String({ description: 'The provider this try went to (email, SMS, mobile push)' }),
    Type.Null(),
  ]),
});

const DeliveryFields = {
  id: Type.String(),
  event_id: Type.String(),
  msg_id: Type.String({ description: 'The `webhook-id` header: the same on every attempt' }),
  status: DeliveryStatus,
  attempt_count: Type.Integer(),
  next_attempt_at: NullableTime,
  last_status_code: NullableInteger,
  last_error: NullableString,
  created_at: Time,
  updated_at: Time,
  completed_at: NullableTime,
};

export const Delivery = Type.Object({ ...DeliveryFields, attempts: Type.Array(Attempt) });

/** A delivery as the events API shows it under an event. */
export const EventDelivery = Type.Object({
  ...DeliveryFields,
  channel: Type.String({ description: '`webhook`, `slack`, `teams`, `email`, `push` or `sms`' }),
  endpoint_id: NullableString,
  user_id: NullableString,
  notification_id: NullableString,
});

export const DeliveryQuery = Type.Object({ status: Type.Optional(DeliveryStatus), ...PageQuery });
