import { type Static, Type } from 'typebox';
import { Compile } from 'typebox/compile';
import type { FieldProblem } from '../errors.ts';
import { EscalationFields } from '../escalation/options.ts';
import { DateTime } from '../http/formats.ts';

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

export const BatchRequest = Type.Object(
  { events: Type.Array(Type.Unknown(), { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
);

export const Accepted = Type.Object({
  id: Type.String({ description: "Herald's id for the event" }),
  source_event_id: Type.String({ description: 'The id the source gave the event (or Herald made up)' }),
  duplicate: Type.Boolean({ description: 'True when this repeated an event already accepted' }),
  status: Type.String(),
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
