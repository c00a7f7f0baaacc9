import { type Static, Type } from 'typebox';
import { Compile } from 'typebox/compile';
import { EventDelivery } from '../delivery/endpoints.schema.ts';
import type { FieldProblem } from '../errors.ts';
import { EscalationView } from '../escalation/escalation.schema.ts';
import { EscalationFields } from '../escalation/options.ts';
import { DateTime } from '../http/formats.ts';
import { ShownState, WriteBack } from '../notifications/notifications.present.ts';
import { RoutingSummary } from '../routing/routing.schema.ts';

export const SEVERITIES = ['info', 'warning', 'error', 'critical'] as const;

const EventType = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$',
  description: 'Dot-separated words, e.g. `purchase_order.approval_requested`',
});
const Id = Type.String({ minLength: 1, maxLength: 200 });
const HttpUrl = Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' });

export const Recipients = Type.Object(
  {
    users: Type.Optional(Type.Array(Id, { maxItems: 1000, uniqueItems: true })),
    groups: Type.Optional(Type.Array(Id, { maxItems: 100, uniqueItems: true })),
  },
  { additionalProperties: false, description: 'Who must be notified, whatever the rules say' },
);

export const Action = Type.Object(
  {
    id: Type.String({
      minLength: 1,
      maxLength: 64,
      pattern: '^[A-Za-z0-9_\\-]+$',
      description: '`approve`, `reject`, `acknowledge`, `comment`, `request_info`, or an id of your own',
    }),
    label: Type.String({ minLength: 1, maxLength: 100 }),
    comment: Type.Optional(
      Type.Union([Type.Literal('required'), Type.Literal('optional')], {
        description: 'Whether responding asks for a comment; `required` refuses a response without one',
      }),
    ),
    confirm: Type.Optional(
      Type.String({ minLength: 1, maxLength: 300, description: 'A question to confirm before responding' }),
    ),
  },
  { additionalProperties: false },
);
export type Action = Static<typeof Action>;

/** How many responses close an event: the first (default), every recipient's, or a quorum. */
export const ResponsePolicy = Type.Union([
  Type.Literal('first'),
  Type.Literal('all'),
  Type.Object({ quorum: Type.Integer({ minimum: 1, maximum: 1000 }) }, { additionalProperties: false }),
]);
export type ResponsePolicy = Static<typeof ResponsePolicy>;

/** The fields of an event besides its type and id, shared by the native format and CloudEvents extensions. */
const HeraldFields = {
  subject: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
  time: Type.Optional(DateTime()),
  severity: Type.Optional(
    Type.Union(
      SEVERITIES.map((s) => Type.Literal(s)),
      { default: 'info' },
    ),
  ),
  title: Type.Optional(Type.String({ maxLength: 500 })),
  summary: Type.Optional(Type.String({ maxLength: 5000 })),
  url: Type.Optional(HttpUrl),
  due_at: Type.Optional(DateTime()),
  recipients: Type.Optional(Recipients),
  actions: Type.Optional(Type.Array(Action, { maxItems: 10 })),
  response_policy: Type.Optional(ResponsePolicy),
  callback_url: Type.Optional(HttpUrl),
  dedup_key: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
};

/** Herald's native event format (`POST /v1/events` with `application/json`). */
export const NativeEvent = Type.Object(
  {
    id: Type.Optional(Id),
    type: EventType,
    /** Optional; when present it must name the publishing source itself. */
    source: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    ...HeraldFields,
    ...EscalationFields,
    data: Type.Optional(Type.Unknown()),
  },
  { additionalProperties: false },
);
export type NativeEvent = Static<typeof NativeEvent>;

/** A CloudEvents 1.0 event in the JSON format (structured mode); Herald's fields may come as extensions. */
export const CloudEvent = Type.Object(
  {
    specversion: Type.Literal('1.0'),
    id: Id,
    source: Type.String({ minLength: 1, maxLength: 2048 }),
    type: EventType,
    datacontenttype: Type.Optional(Type.String({ maxLength: 200 })),
    dataschema: Type.Optional(Type.String({ maxLength: 2048 })),
    data: Type.Optional(Type.Unknown()),
    data_base64: Type.Optional(Type.String()),
    ...HeraldFields,
  },
  // CloudEvents allows any extension attribute.
  { additionalProperties: true },
);
export type CloudEvent = Static<typeof CloudEvent>;

/** A batch as `application/json`: native events, or CloudEvents in the JSON format, mixed as needed. */
export const BatchRequest = Type.Object(
  { events: Type.Array(Type.Union([NativeEvent, CloudEvent]), { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
);

/** A batch as `application/cloudevents-batch+json`: a JSON array of CloudEvents. */
export const CloudEventBatch = Type.Array(CloudEvent, { minItems: 1, maxItems: 1000 });

/*
 * The bodies publishing takes, by media type, for the OpenAPI document: the handlers pick the format from the
 * request (events.routes.ts) and check each event themselves.
 */

export const PUBLISH_MODES =
  "Three formats: Herald's native event as `application/json`; a CloudEvent in structured mode as " +
  '`application/cloudevents+json`; or a CloudEvent in binary mode: its attributes as `ce-*` headers ' +
  "(`ce-specversion`, `ce-id`, `ce-source`, `ce-type` required; Herald's fields as extensions such as " +
  '`ce-severity`, `ce-title`, `ce-recipients`, percent-encoded) and its data as the body, in any media type ' +
  '(`Content-Type` becomes `datacontenttype`). A batch (`application/cloudevents-batch+json`) goes to ' +
  '`/v1/events/batch`.';

export const PublishBody = {
  content: {
    'application/json': { schema: NativeEvent },
    'application/cloudevents+json': { schema: CloudEvent },
    '*/*': {
      schema: Type.Unknown({
        description: "Binary mode (with `ce-*` headers): the event's data, in the media type it declares",
      }),
    },
  },
};

const CeHeader = (description: string) => Type.Optional(Type.String({ description }));

export const PublishHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ maxLength: 200 })),
  'ce-specversion': CeHeader('Binary mode: `1.0`'),
  'ce-id': CeHeader('Binary mode: the event id'),
  'ce-source': CeHeader('Binary mode: the source URI'),
  'ce-type': CeHeader('Binary mode: the event type'),
});

export const BatchBody = {
  content: {
    'application/json': { schema: BatchRequest },
    'application/cloudevents-batch+json': { schema: CloudEventBatch },
  },
};

export const Accepted = Type.Object({
  id: Type.String({ description: "Herald's id for the event" }),
  source_event_id: Type.String({ description: 'The id the source gave the event (or Herald made up)' }),
  duplicate: Type.Boolean({ description: 'True when this repeated an event already accepted' }),
  status: Type.String(),
});

const Time = Type.String({ format: 'date-time' });
const NullableTime = Type.Union([Time, Type.Null()]);
const NullableText = Type.Union([Type.String(), Type.Null()]);
const Open = { additionalProperties: true } as const;

/** An event as the API shows it (events.present.ts): the fields it was published with, and how it stands. */
export const Event = Type.Object({
  id: Type.String({ description: "Herald's id for the event" }),
  source: Type.String({ description: 'The id of the source that published it' }),
  source_event_id: Type.String({ description: 'The id the source gave the event (or Herald made up)' }),
  type: Type.String(),
  subject: NullableText,
  time: Time,
  severity: Type.Union([
    Type.Literal('info'),
    Type.Literal('warning'),
    Type.Literal('error'),
    Type.Literal('critical'),
  ]),
  title: NullableText,
  summary: NullableText,
  url: NullableText,
  due_at: NullableTime,
  recipients: Type.Union([
    Type.Object({
      users: Type.Optional(Type.Array(Type.String())),
      groups: Type.Optional(Type.Array(Type.String())),
    }),
    Type.Null(),
  ]),
  actions: Type.Union([Type.Array(Action), Type.Null()]),
  response_policy: ResponsePolicy,
  callback_url: NullableText,
  dedup_key: NullableText,
  data: Type.Unknown({ description: 'The data it was published with; null when it had none' }),
  extensions: Type.Union([Type.Object({}, Open), Type.Null()], {
    description:
      'CloudEvents attributes Herald has no field for (the source URI, extensions, datacontenttype)',
  }),
  received_at: Time,
  status: Type.Union([Type.Literal('pending'), Type.Literal('routed')]),
  resolution: Type.Union([Type.String(), Type.Null()], {
    description: '`responded`, `acknowledged`, `resolved` or `cancelled`; null while open',
  }),
  resolved_at: NullableTime,
  resolved_by: Type.Union([Type.String(), Type.Null()], { description: '`user:<id>` or `source:<id>`' }),
});

/** A response to an event's actions, with how it was written back to the source. */
const EventResponse = Type.Object({
  id: Type.String(),
  notification_id: Type.String(),
  action: Type.String(),
  comment: NullableText,
  responder: Type.Object({ id: Type.String(), name: Type.String(), email: NullableText }, Open),
  via: Type.String({ description: '`api`, `link` (email or push) or `slack`' }),
  at: Time,
  write_back: Type.Union([WriteBack, Type.Null()]),
});

/** `GET /v1/events/{id}`: an event and what became of it. */
export const EventDetail = Type.Object({
  ...Event.properties,
  routed_at: NullableTime,
  // Read back from the audit log as JSON: typed unknown for the handler, described for the document.
  routing: Type.Unsafe<unknown>(
    Type.Union([RoutingSummary, Type.Null()], {
      description: 'The routing decision recorded when it was routed; null while pending',
    }),
  ),
  notifications: Type.Array(
    Type.Object({
      id: Type.String(),
      user_id: Type.String(),
      state: ShownState,
      channels: Type.Array(Type.String()),
      created_at: Time,
      read_at: NullableTime,
      resolved_at: NullableTime,
      resolved_by: NullableText,
    }),
    { description: 'Its notifications (the first 1,000, by user id)' },
  ),
  responses: Type.Array(EventResponse, { description: 'Oldest first' }),
  write_back: Type.Union([WriteBack, Type.Null()], { description: "The latest response's write-back" }),
  deliveries: Type.Array(EventDelivery),
  escalation: Type.Union([EscalationView, Type.Null()]),
});

/** One item of a batch's answer: accepted (`status` 202) or refused with a problem document of its own. */
const BatchItem = Type.Union([
  Type.Object(
    {
      index: Type.Integer({ description: 'Its position in the batch' }),
      id: Type.String(),
      source_event_id: Type.String(),
      duplicate: Type.Boolean(),
      status: Type.Integer({ description: '202: accepted' }),
      state: Type.String({
        description: "The event's status: `pending` or, for a duplicate, where it stands",
      }),
    },
    Open,
  ),
  Type.Object(
    {
      index: Type.Integer({ description: 'Its position in the batch' }),
      status: Type.Integer({ description: 'The HTTP status the event would have got on its own' }),
      error: Type.Object(
        {
          type: Type.String(),
          title: Type.String(),
          status: Type.Integer(),
          code: Type.String({ description: 'One of `x-error-codes`' }),
          detail: Type.String(),
          errors: Type.Optional(
            Type.Array(Type.Object({ field: Type.String(), message: Type.String() }, Open)),
          ),
        },
        { ...Open, description: 'An RFC 9457 problem document' },
      ),
    },
    Open,
  ),
]);

/** The answer to a batch: each event is accepted or refused on its own. */
export const BatchAnswer = Type.Object({
  accepted: Type.Integer(),
  rejected: Type.Integer(),
  items: Type.Array(BatchItem, { description: 'One per event, in the order sent' }),
});

// Compiled with Herald's date-time check (src/http/formats.ts), which TypeBox looks up now.
const nativeCheck = Compile(NativeEvent);
const cloudCheck = Compile(CloudEvent);

/** Validates a value against a compiled schema, returning field problems (`prefix` names where it sits). */
function problems(
  check: typeof nativeCheck | typeof cloudCheck,
  value: unknown,
  prefix: string,
): FieldProblem[] {
  if (check.Check(value)) return [];
  const out: FieldProblem[] = [];
  for (const error of check.Errors(value)) {
    if (error.keyword === 'boolean') continue; // repeated by the additionalProperties entry
    const path = error.instancePath.split('/').filter(Boolean).join('.');
    const params = error.params as Record<string, unknown>;
    const extra = params['additionalProperties'];
    const missing = params['requiredProperties'];
    if (Array.isArray(extra)) {
      for (const name of extra)
        out.push({ field: join(prefix, path, String(name)), message: 'is not a known field' });
    } else if (Array.isArray(missing)) {
      for (const name of missing)
        out.push({ field: join(prefix, path, String(name)), message: 'is required' });
    } else {
      out.push({ field: join(prefix, path), message: error.message });
    }
    if (out.length >= 20) break;
  }
  return out;
}

function join(...parts: string[]): string {
  return parts.filter(Boolean).join('.');
}

export const checkNative = (value: unknown, prefix = ''): FieldProblem[] =>
  problems(nativeCheck, value, prefix);
export const checkCloudEvent = (value: unknown, prefix = ''): FieldProblem[] =>
  problems(cloudCheck, value, prefix);
