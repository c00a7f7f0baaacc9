import { policyOf, presentPolicy } from '../actions/policy.ts';
import { iso } from '../clock.ts';
import type { EventRow } from '../db/tables.ts';
import type { Action } from './events.schema.ts';

function parse<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}

/** The public shape of an event, as the API and outbound webhooks show it. */
export function presentEvent(row: EventRow) {
  return {
    id: row.id,
    source: row.source_id,
    source_event_id: row.external_id,
    type: row.type,
    subject: row.subject,
    time: iso(row.time),
    severity: row.severity,
    title: row.title,
    summary: row.summary,
    url: row.url,
    due_at: iso(row.due_at),
    recipients: parse<{ users?: string[]; groups?: string[] }>(row.recipients),
    actions: parse<Action[]>(row.actions),
    response_policy: presentPolicy(policyOf(row)),
    callback_url: row.callback_url,
    dedup_key: row.dedup_key,
    data: parse<unknown>(row.data),
    extensions: parse<Record<string, unknown>>(row.extensions),
    received_at: iso(row.received_at),
    status: row.status,
    resolution: row.resolution,
    resolved_at: iso(row.resolved_at),
    resolved_by: row.resolved_by,
  };
}

/**
 * The body of an outbound webhook, in the Standard Webhooks shape `{type, timestamp, data}`; `data` is the
 * event as the API shows it.
 */
export function webhookPayload(row: EventRow): {
  type: string;
  timestamp: string;
  data: ReturnType<typeof presentEvent>;
} {
  return { type: row.type, timestamp: iso(row.time), data: presentEvent(row) };
}
