import { type FieldProblem, HeraldError } from '../errors.ts';
import { type EscalationOptions, pickEscalation } from '../escalation/options.ts';
import { toTime } from '../http/formats.ts';
import { jsonProblems } from '../http/json.ts';
import { sha256 } from '../ids.ts';
import {
  type Action,
  type CloudEvent,
  checkCloudEvent,
  checkNative,
  type NativeEvent,
  type ResponsePolicy,
} from './events.schema.ts';

/** An event as received, validated and reduced to Herald's fields; not yet stored. */
export interface IncomingEvent {
  sourceId: string;
  /** The source's id for the event, when it sent one. */
  externalId: string | undefined;
  idempotencyKey: string | undefined;
  format: 'native' | 'cloudevents';
  type: string;
  subject: string | null;
  time: number | null;
  severity: 'info' | 'warning' | 'error' | 'critical';
  title: string | null;
  summary: string | null;
  url: string | null;
  dueAt: number | null;
  recipients: { users?: string[]; groups?: string[] } | null;
  actions: Action[] | null;
  responsePolicy: ResponsePolicy | null;
  /** Where responses are written back, instead of the source's callback URL. */
  callbackUrl: string | null;
  dedupKey: string | null;
  /** Escalation options of a native event (src/escalation/options.ts). */
  escalation?: EscalationOptions | undefined;
  data: unknown;
  extensions: Record<string, unknown> | null;
  /**
   * Hash of what was sent, to tell an honest retry from a different event reusing the id. Empty for an event
   * that names neither an id nor an idempotency key: it gets a new id, so nothing sent later can repeat it.
   */
  bodyHash: string;
}

/** A problem with one event, reported on its own (a batch answers item by item). */
export class EventProblem extends HeraldError {}

const join = (prefix: string, field: string): string => (prefix ? `${prefix}.${field}` : field);

function fail(problems: FieldProblem[]): never {
  const first = problems[0]!;
  throw new EventProblem('validation_failed', `${first.field} ${first.message}`, { errors: problems });
}

/** JSON with object keys sorted, so the same content always hashes the same. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.keys(value as object)
    .sort()
    .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
    .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
  return `{${entries.join(',')}}`;
}

/** A date-time the schema checked, as epoch milliseconds (src/http/formats.ts). */
const ms = (text: string | undefined, field: string): number | null =>
  text === undefined ? null : toTime(text, field);

/**
 * What the database could not store as sent, looked for before anything walks the event: nesting too deep,
 * text that is not well-formed Unicode, and NUL characters outside `data` (stored as escaped JSON).
 */
const textProblems = (value: unknown, prefix: string): FieldProblem[] =>
  jsonProblems(value, { prefix, refuseNul: { except: 'data' } });

/** Validates and normalises a native Herald event. `prefix` names the item in a batch (`events.3`). */
export function fromNative(
  body: unknown,
  sourceId: string,
  idempotencyKey: string | undefined,
  prefix = '',
): IncomingEvent {
  const problems = textProblems(body, prefix);
  if (problems.length === 0) problems.push(...checkNative(body, prefix));
  if (problems.length > 0) fail(problems);
  const event = body as NativeEvent;
  if (event.source !== undefined && event.source !== sourceId) {
    throw new EventProblem('forbidden', `This key publishes as source "${sourceId}", not "${event.source}"`);
  }
  return {
    sourceId,
    externalId: event.id,
    idempotencyKey,
    format: 'native',
    type: event.type,
    subject: event.subject ?? null,
    time: ms(event.time, join(prefix, 'time')),
    severity: event.severity ?? 'info',
    title: event.title ?? null,
    summary: event.summary ?? null,
    url: event.url ?? null,
    dueAt: ms(event.due_at, join(prefix, 'due_at')),
    recipients: event.recipients ?? null,
    actions: event.actions ?? null,
    responsePolicy: event.response_policy ?? null,
    callbackUrl: event.callback_url ?? null,
    dedupKey: event.dedup_key ?? null,
    escalation: pickEscalation(event),
    data: event.data ?? null,
    extensions: null,
    bodyHash: event.id === undefined && idempotencyKey === undefined ? '' : sha256(canonicalJson(body)),
  };
}

// Herald's own fields, as they may appear among a CloudEvent's attributes. CloudEvents attribute names are
// lower-case letters and digits only, so `due_at`, `dedup_key` and the like are also accepted without `_`.
const CE_ALIASES: Record<string, string> = {
  dueat: 'due_at',
  dedupkey: 'dedup_key',
  responsepolicy: 'response_policy',
  callbackurl: 'callback_url',
};
const CE_CORE = new Set(['specversion', 'id', 'source', 'type', 'data', 'data_base64']);
const HERALD_FIELDS = new Set([
  'subject',
  'time',
  'severity',
  'title',
  'summary',
  'url',
  'due_at',
  'recipients',
  'actions',
  'response_policy',
  'callback_url',
  'dedup_key',
]);

/** Validates and normalises a CloudEvent given as a JSON object (structured mode, or rebuilt from binary mode). */
export function fromCloudEvent(
  input: unknown,
  sourceId: string,
  idempotencyKey: string | undefined,
  prefix = '',
  bodyHash?: string,
): IncomingEvent {
  let attributes = input;
  if (input !== null && typeof input === 'object' && !Array.isArray(input)) {
    attributes = { ...(input as Record<string, unknown>) };
    const record = attributes as Record<string, unknown>;
    for (const [alias, field] of Object.entries(CE_ALIASES)) {
      if (record[alias] !== undefined && record[field] === undefined) {
        record[field] = record[alias];
        delete record[alias];
      }
    }
    if (typeof record['recipients'] === 'string')
      record['recipients'] = parseRecipients(record['recipients']);
  }
  const problems = textProblems(attributes, prefix);
  if (problems.length === 0) problems.push(...checkCloudEvent(attributes, prefix));
  if (problems.length > 0) fail(problems);
  const ce = attributes as CloudEvent & Record<string, unknown>;
  const extensions: Record<string, unknown> = { source: ce.source };
  for (const [key, value] of Object.entries(ce)) {
    if (!CE_CORE.has(key) && !HERALD_FIELDS.has(key)) extensions[key] = value;
  }
  let data: unknown = ce.data ?? null;
  if (ce.data_base64 !== undefined) data = { data_base64: ce.data_base64 };
  return {
    sourceId,
    externalId: ce.id,
    idempotencyKey,
    format: 'cloudevents',
    type: ce.type,
    subject: ce.subject ?? null,
    time: ms(ce.time, join(prefix, 'time')),
    severity: ce.severity ?? 'info',
    title: ce.title ?? null,
    summary: ce.summary ?? null,
    url: ce.url ?? null,
    dueAt: ms(ce.due_at, join(prefix, 'due_at')),
    recipients: ce.recipients ?? null,
    actions: ce.actions ?? null,
    responsePolicy: ce.response_policy ?? null,
    callbackUrl: ce.callback_url ?? null,
    dedupKey: ce.dedup_key ?? null,
    data,
    extensions,
    bodyHash: bodyHash ?? sha256(canonicalJson(input)),
  };
}

/** `recipients` as a CloudEvents string attribute: JSON (`{"users":[...]}`) or a comma-separated list of user ids. */
function parseRecipients(text: string): unknown {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return text;
    }
  }
  return {
    users: trimmed
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
  };
}

/**
 * Rebuilds a CloudEvent from HTTP binary mode: `ce-*` headers carry the attributes (percent-encoded,
 * CloudEvents HTTP binding 3.1.3.2), the body is the data, `Content-Type` its datacontenttype.
 */
export function fromBinaryCloudEvent(
  headers: Record<string, string | string[] | undefined>,
  body: Buffer | string | object | undefined,
  contentType: string | undefined,
  sourceId: string,
  idempotencyKey: string | undefined,
): IncomingEvent {
  const attributes: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith('ce-') || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(',') : value;
    try {
      attributes[name.slice(3)] = decodeURIComponent(text);
    } catch {
      throw new EventProblem('validation_failed', `Header ${name} is not valid percent-encoded UTF-8`, {
        errors: [{ field: `header.${name}`, message: 'is not valid percent-encoded UTF-8' }],
      });
    }
  }
  if (contentType) attributes['datacontenttype'] = contentType;
  let raw = '';
  if (Buffer.isBuffer(body)) {
    raw = body.toString('base64');
    if (/^text\/|[/+](json|xml)\b/i.test(contentType ?? '')) {
      attributes['data'] = body.toString('utf8');
    } else if (body.length > 0) {
      attributes['data_base64'] = raw;
    }
  } else if (body !== undefined) {
    // Parsed JSON, hashed below: checked first (its NUL characters are kept, as in any event's data).
    const problems = jsonProblems(body, { prefix: 'body' });
    if (problems.length > 0) fail(problems);
    attributes['data'] = body;
    raw = canonicalJson(body);
  }
  const hash = sha256(canonicalJson({ ...attributes, data: undefined, data_base64: undefined }) + '\n' + raw);
  return fromCloudEvent(attributes, sourceId, idempotencyKey, 'header', hash);
}
