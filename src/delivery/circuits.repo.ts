import type { AuditEntry } from '../audit/audit.repo.ts';
import { redactUrl } from '../audit/redact.ts';
import { iso } from '../clock.ts';
import type { Config } from '../config.ts';
import type { Db } from '../db/engine.ts';
import type { CircuitColumns } from '../db/tables.ts';
import type { IntegrationAlert } from '../ops/alerts.ts';
import { type BreakerSettings, nextCircuit, type Transition } from './circuit.ts';
import type { Outcome } from './outcomes.ts';

export function breakerSettings(config: Config): BreakerSettings {
  return {
    threshold: config.breakerThreshold,
    pauseMs: config.breakerPauseSeconds * 1000,
    maxPauseMs: 3600 * 1000,
    disableAfterMs: config.breakerDisableAfterSeconds * 1000,
  };
}

interface Fold {
  kind: 'endpoint' | 'provider';
  id: string;
  channel: string;
  url: string | null;
  /** The circuit as read, and as the batch leaves it. */
  read: CircuitColumns;
  state: CircuitColumns;
  transitions: Transition[];
  lastError: string | null;
  lastStatus: number | null;
}

/**
 * Folds a batch of outcomes into the circuits of the endpoints and providers involved, in the outcome
 * transaction. An endpoint counts every attempt that must be retried; a provider counts the tries it was at
 * fault for. Returns the alerts and audit entries for what changed, and the endpoints to disable.
 */
export async function updateCircuits(
  trx: Db,
  outcomes: readonly Outcome[],
  settings: BreakerSettings,
  now: number,
) {
  const endpointIds = [
    ...new Set(outcomes.flatMap((o) => (o.delivery.endpoint_id === null ? [] : [o.delivery.endpoint_id]))),
  ];
  const providerIds = [
    ...new Set(
      outcomes.flatMap((o) => o.sent.tries.flatMap((t) => (t.providerId === null ? [] : [t.providerId]))),
    ),
  ];
  const folds = new Map<string, Fold>();
  if (endpointIds.length > 0) {
    const rows = await trx
      .selectFrom('endpoints')
      .select(['id', 'kind', 'url', 'failures', 'failing_since', 'paused_until'])
      .where('id', 'in', endpointIds)
      .execute();
    for (const r of rows) folds.set(`endpoint:${r.id}`, fold('endpoint', r.id, r.kind, r.url, r));
  }
  if (providerIds.length > 0) {
    const rows = await trx
      .selectFrom('providers')
      .select(['id', 'channel', 'failures', 'failing_since', 'paused_until'])
      .where('id', 'in', providerIds)
      .execute();
    for (const r of rows) folds.set(`provider:${r.id}`, fold('provider', r.id, r.channel, null, r));
  }
  const apply = (key: string, success: boolean, error: string | null, status: number | null) => {
    const f = folds.get(key);
    if (f === undefined) return;
    const next = nextCircuit(f.state, success, now, settings);
    f.state = next.state;
    if (next.transition !== null) f.transitions.push(next.transition);
    if (!success) {
      f.lastError = error;
      f.lastStatus = status;
    }
  };
  for (const { delivery, sent } of outcomes) {
    if (delivery.endpoint_id !== null && sent.result.outcome !== 'failed') {
      apply(
        `endpoint:${delivery.endpoint_id}`,
        sent.result.outcome === 'succeeded',
        sent.result.error,
        sent.result.statusCode,
      );
    }
    for (const t of sent.tries) {
      if (t.providerId === null || (t.result.outcome !== 'succeeded' && !t.result.providerFault)) continue;
      apply(
        `provider:${t.providerId}`,
        t.result.outcome === 'succeeded',
        t.result.error,
        t.result.statusCode,
      );
    }
  }
  const alerts: IntegrationAlert[] = [];
  const audit: AuditEntry[] = [];
  /** Endpoints the breaker disables, with what the audit entry of their disabling records. */
  const disableEndpoints = new Map<string, Record<string, unknown>>();
  for (const f of folds.values()) {
    const table = f.kind === 'endpoint' ? 'endpoints' : 'providers';
    const disabled = f.transitions.includes('disabled');
    // A healthy circuit that only saw successes is left as it is: most batches write nothing here.
    const unchanged =
      f.lastError === null &&
      f.state.failures === f.read.failures &&
      f.state.failing_since === f.read.failing_since &&
      f.state.paused_until === f.read.paused_until;
    if (!unchanged || f.transitions.length > 0) {
      await trx
        .updateTable(table)
        .set({
          ...f.state,
          ...(f.kind === 'provider'
            ? { last_error: f.lastError, ...(disabled ? { enabled: 0, updated_at: now } : {}) }
            : {}),
        })
        .where('id', '=', f.id)
        .execute();
    }
    for (const transition of new Set(f.transitions)) {
      alerts.push(alertFor(f, transition!, now));
      const data = {
        failures: f.state.failures,
        failing_since: iso(f.state.failing_since),
        paused_until: iso(f.state.paused_until),
        last_error: f.lastError,
      };
      // The outcome writer disables the endpoint and records it once, with the deliveries it cancelled.
      if (transition === 'disabled' && f.kind === 'endpoint') disableEndpoints.set(f.id, data);
      else {
        audit.push({
          at: now,
          actor: 'system',
          action: `${f.kind}.${transition}`,
          subject_type: f.kind,
          subject_id: f.id,
          data,
        });
      }
    }
  }
  return { alerts, audit, disableEndpoints };
}

function fold(
  kind: Fold['kind'],
  id: string,
  channel: string,
  url: string | null,
  state: CircuitColumns,
): Fold {
  const { failures, failing_since, paused_until } = state;
  return {
    kind,
    id,
    channel,
    url,
    read: { failures, failing_since, paused_until },
    state: { failures, failing_since, paused_until },
    transitions: [],
    lastError: null,
    lastStatus: null,
  };
}

function alertFor(f: Fold, transition: Exclude<Transition, null>, now: number): IntegrationAlert {
  const name = `${f.kind === 'endpoint' ? 'Endpoint' : 'Provider'} ${f.id} (${f.channel})`;
  const retryStatus =
    transition === 'paused'
      ? `paused until ${iso(f.state.paused_until)}, then probed; disabled if still failing after the configured period`
      : transition === 'disabled'
        ? 'disabled after failing for too long; re-enable it once fixed'
        : 'recovered; sending again';
  return {
    type: `herald.${f.kind}.${transition}`,
    severity: transition === 'disabled' ? 'critical' : transition === 'paused' ? 'error' : 'info',
    title: `${name} ${transition === 'recovered' ? 'recovered' : transition === 'paused' ? 'is failing' : 'was disabled'}`,
    // The alert is routed like any event: a chat webhook URL is a credential, a query may carry one.
    integration: {
      kind: f.kind,
      id: f.id,
      channel: f.channel,
      url: f.url === null ? null : redactUrl(f.url, { path: f.channel === 'webhook' }),
    },
    errorCode: f.lastError,
    statusCode: f.lastStatus,
    retryStatus,
    failures: f.state.failures,
    failingSince: f.state.failing_since ?? (transition === 'recovered' ? null : now),
  };
}
