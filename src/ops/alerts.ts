import { createHash } from 'node:crypto';
import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import { insertEvents } from '../events/events.repo.ts';
import { newId } from '../ids.ts';

/** The source Herald publishes its own operational events as. Route them with rules on `herald.*`. */
export const HERALD_SOURCE = 'herald';

/** Something about an integration (an endpoint or a provider) that operators must hear about. */
export interface IntegrationAlert {
  /** `herald.endpoint.paused`, `herald.provider.disabled`, `herald.endpoint.recovered`, ... */
  type: string;
  severity: 'info' | 'warning' | 'error' | 'critical';
  title: string;
  integration: { kind: 'endpoint' | 'provider'; id: string; channel: string; url?: string | null };
  errorCode: string | null;
  statusCode: number | null;
  /** `paused until ...; probing`, `disabled`, `recovered`. */
  retryStatus: string;
  failures: number;
  failingSince: number | null;
}

/**
 * Publishes alerts as events of the `herald` source, in the caller's transaction, so they are routed like any
 * event (rules on `herald.*` reach the operators on their channels). The caller wakes the router after commit.
 */
export async function raiseAlerts(db: Db, alerts: IntegrationAlert[], now: number): Promise<number> {
  if (alerts.length === 0) return 0;
  const rows = alerts.map((alert) => {
    const data = {
      integration: alert.integration,
      error_code: alert.errorCode,
      status_code: alert.statusCode,
      retry_status: alert.retryStatus,
      failures: alert.failures,
      failing_since: iso(alert.failingSince),
    };
    const id = newId('evt', now);
    return {
      id,
      source_id: HERALD_SOURCE,
      external_id: id,
      idempotency_key: null,
      body_hash: createHash('sha256')
        .update(JSON.stringify([alert.type, data]))
        .digest('hex'),
      format: 'native' as const,
      type: alert.type,
      subject: `${alert.integration.kind}/${alert.integration.id}`,
      time: now,
      severity: alert.severity,
      title: alert.title,
      summary: `${alert.retryStatus}${alert.errorCode === null ? '' : ` (last error: ${alert.errorCode})`}`,
      url: null,
      due_at: null,
      recipients: null,
      actions: null,
      // Per transition: a repeated failure updates its open alert, while recovery or disabling is news.
      dedup_key: `${alert.integration.kind}/${alert.integration.id}/${alert.type}`,
      data: JSON.stringify(data),
      extensions: null,
      status: 'pending' as const,
      received_at: now,
      routed_at: null,
      locked_until: 0,
    };
  });
  return (await insertEvents(db, rows)).size;
}
