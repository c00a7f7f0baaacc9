import { REDACTED, redactUrl } from '../audit/redact.ts';
import { iso } from '../clock.ts';
import type { CircuitColumns, DeliveryRow, EndpointRow } from '../db/tables.ts';
import type { AttemptRow } from './deliveries.repo.ts';

/**
 * An endpoint as the admin API shows it, without its secrets: the signing secret and header values read
 * REDACTED, and a chat endpoint's URL (its own credential) only its scheme and host. The signing secret is
 * shown on purpose only (the answer that set it, `GET /endpoints/{id}/secret`). `now` (Herald's clock) says
 * whether its circuit is still paused.
 */
export function presentEndpoint(row: EndpointRow, now: number) {
  return {
    id: row.id,
    kind: row.kind,
    url: presentUrl(row),
    description: row.description,
    types: JSON.parse(row.types) as string[],
    secret: REDACTED,
    status: row.status,
    disabled_reason: row.disabled_reason,
    filter: row.filter,
    transform: row.transform,
    headers: Object.fromEntries(Object.keys(headersOf(row)).map((name) => [name, REDACTED])),
    payload: row.payload,
    rate_limit: row.rate_limit,
    ordered: row.ordered === 1,
    circuit: presentCircuit(row, now),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

/** An endpoint's URL as reads show it: a Slack or Teams webhook URL is a bearer secret. */
export function presentUrl(row: Pick<EndpointRow, 'kind' | 'url'>): string {
  return row.kind === 'webhook' ? row.url : redactUrl(row.url, { path: false });
}

/** An endpoint's own request headers, values included. */
export function headersOf(row: Pick<EndpointRow, 'headers'>): Record<string, string> {
  return row.headers === null ? {} : (JSON.parse(row.headers) as Record<string, string>);
}

/** Where an endpoint's or provider's circuit stands (see delivery/circuit.ts). */
export function presentCircuit(row: CircuitColumns, now: number) {
  const state =
    row.paused_until !== null
      ? row.paused_until > now
        ? ('paused' as const)
        : ('probing' as const)
      : row.failures > 0
        ? ('failing' as const)
        : ('closed' as const);
  return {
    state,
    failures: row.failures,
    failing_since: iso(row.failing_since),
    paused_until: iso(row.paused_until),
  };
}

export function presentAttempt(row: AttemptRow) {
  return {
    id: row.id,
    attempted_at: iso(row.attempted_at),
    trigger: row.trigger,
    outcome: row.outcome,
    status_code: row.status_code,
    latency_ms: row.latency_ms,
    response: row.response,
    error: row.error,
    provider_id: row.provider_id,
  };
}

function deliveryFields(row: DeliveryRow) {
  const pending = row.status === 'pending';
  return {
    id: row.id,
    event_id: row.event_id,
    msg_id: row.msg_id,
    status: row.status,
    attempt_count: row.attempt_count,
    next_attempt_at: pending ? iso(row.next_attempt_at) : null,
    last_status_code: row.last_status_code,
    last_error: row.last_error,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
    // A pending delivery keeps its earlier completed_at only as the mark of a manual resend (see reopenDelivery).
    completed_at: pending ? null : iso(row.completed_at),
  };
}

/** A delivery with its attempts, oldest attempt first. */
export function presentDelivery(row: DeliveryRow, attempts: AttemptRow[]) {
  return { ...deliveryFields(row), attempts: attempts.map(presentAttempt) };
}

/** A delivery as the events API lists it under its event. */
export function presentEventDelivery(row: DeliveryRow) {
  return {
    ...deliveryFields(row),
    channel: row.channel,
    endpoint_id: row.endpoint_id,
    user_id: row.user_id,
    notification_id: row.notification_id,
  };
}
