import { type AuditEntry, appendAudit } from '../audit/audit.repo.ts';
import type { SendResult } from '../channels/channel.ts';
import { isUserChannel, RETRY_SCHEDULES } from '../channels/registry.ts';
import type { Config } from '../config.ts';
import type { Context } from '../context.ts';
import type { DeliveryRow } from '../db/tables.ts';
import { newId } from '../ids.ts';
import { raiseAlerts } from '../ops/alerts.ts';
import { breakerSettings, updateCircuits } from './circuits.repo.ts';
import {
  type AttemptRow,
  cancelPendingForEndpoint,
  type DeliveryAfterAttempt,
  finishAttempts,
  insertAttempts,
} from './deliveries.repo.ts';
import { deleteDevices } from './devices.repo.ts';
import { disableEndpoint } from './endpoints.repo.ts';
import { insertFallbacks } from './fallback.ts';
import type { Sent } from './senders.ts';

/** One finished attempt, waiting to be written. */
export interface Outcome {
  /** The delivery as claimed (its `locked_until` is the lease). */
  delivery: DeliveryRow;
  trigger: 'scheduled' | 'manual';
  /** When the attempt was made (the `webhook-timestamp`). */
  attemptedAt: number;
  sent: Sent;
}

/**
 * The delivery's state after an attempt: done on success, dead on a final failure or when the retry schedule is
 * used up, otherwise pending again after the schedule's delay for this attempt (±10% jitter, so retries of many
 * deliveries that failed together spread out) and no earlier than the receiver's `Retry-After`.
 */
export function afterAttempt(
  delivery: DeliveryRow,
  result: SendResult,
  schedule: readonly number[],
  now: number,
): DeliveryAfterAttempt {
  const attemptCount = delivery.attempt_count + 1;
  const state: DeliveryAfterAttempt = {
    status: 'pending',
    attempt_count: attemptCount,
    next_attempt_at: delivery.next_attempt_at,
    last_status_code: result.statusCode,
    last_error: result.error,
    updated_at: now,
    completed_at: null,
  };
  if (result.outcome === 'succeeded') return { ...state, status: 'succeeded', completed_at: now };
  const delaySeconds = schedule[attemptCount - 1];
  if (result.outcome === 'failed' || delaySeconds === undefined) {
    return { ...state, status: 'dead', completed_at: now };
  }
  const jittered = delaySeconds * 1000 * (0.9 + Math.random() * 0.2);
  return { ...state, next_attempt_at: now + Math.round(Math.max(jittered, result.retryAfterMs ?? 0)) };
}

const MAX_BATCH = 500;
const GATHER = 64;
const GATHER_MS = 3;
const MAX_WRITE_TRIES = 5;

interface Queued {
  outcome: Outcome;
  tries: number;
  done: () => void;
}

/**
 * Writes attempt outcomes in batches: attempt row, delivery state, audit entries and endpoint disabling for many
 * outcomes per transaction, because SQLite has one writer and one commit per attempt would cap throughput. A
 * failed write is tried again with backoff; an outcome that cannot be written is given up (the lease then runs
 * out and the delivery is attempted again), so the caller is never left waiting.
 */
export class OutcomeWriter {
  readonly #ctx: Context;
  #queue: Queued[] = [];
  #writing: Promise<void> | undefined;
  #failures = 0;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /** Queues an outcome; resolves once it is committed (or given up). */
  add(outcome: Outcome): Promise<void> {
    return new Promise((resolve) => {
      this.#queue.push({ outcome, tries: 0, done: resolve });
      this.#writing ??= this.#drain();
    });
  }

  /** Resolves when everything queued so far is written. */
  async flush(): Promise<void> {
    while (this.#writing !== undefined) await this.#writing;
  }

  async #drain(): Promise<void> {
    // Let the outcomes of sends finishing together join this batch; when few are waiting, a moment longer: one
    // commit of fifty outcomes costs little more than one of five.
    await new Promise((r) => setImmediate(r));
    if (this.#queue.length < GATHER) await new Promise((r) => setTimeout(r, GATHER_MS));
    while (this.#queue.length > 0) {
      const batch = this.#queue.splice(0, MAX_BATCH);
      try {
        await this.#write(batch.map((q) => q.outcome));
        this.#failures = 0;
        for (const q of batch) q.done();
      } catch (error) {
        this.#failures++;
        this.#ctx.metrics.workerErrors.inc({ worker: 'delivery-outcomes' });
        this.#ctx.log.error({ err: error }, 'writing delivery outcomes failed; will retry');
        const retry = batch.filter((q) => ++q.tries < MAX_WRITE_TRIES);
        for (const q of batch) if (q.tries >= MAX_WRITE_TRIES) q.done();
        this.#queue.unshift(...retry);
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** this.#failures, 5_000)));
      }
    }
    this.#writing = undefined;
  }

  async #write(outcomes: Outcome[]): Promise<void> {
    const { clock, config } = this.#ctx;
    const now = clock.now();
    const attempts: AttemptRow[] = [];
    const audit: AuditEntry[] = [];
    const disable = new Map<string, string>();
    const states = outcomes.map((o) =>
      afterAttempt(o.delivery, o.sent.result, scheduleFor(o.delivery.channel, config), now),
    );
    outcomes.forEach(({ delivery, sent, trigger }, i) => {
      const state = states[i]!;
      for (const { providerId, at, result } of sent.tries) {
        attempts.push({
          id: newId('att', at),
          delivery_id: delivery.id,
          attempted_at: at,
          trigger,
          outcome: result.outcome,
          status_code: result.statusCode,
          latency_ms: result.latencyMs,
          response: result.response,
          error: result.error,
          provider_id: providerId,
          provider_ref: result.providerMessageId,
        });
      }
      audit.push({
        at: now,
        actor: 'system',
        action: AUDIT_ACTION[state.status],
        subject_type: 'delivery',
        subject_id: delivery.id,
        data: {
          channel: delivery.channel,
          endpoint_id: delivery.endpoint_id,
          notification_id: delivery.notification_id,
          event_id: delivery.event_id,
          attempt: state.attempt_count,
          trigger,
          status_code: sent.result.statusCode,
          error: sent.result.error,
          ...(state.status === 'pending'
            ? { next_attempt_at: new Date(state.next_attempt_at).toISOString() }
            : {}),
        },
      });
      if (sent.result.disableEndpoint !== null && delivery.endpoint_id !== null) {
        disable.set(delivery.endpoint_id, sent.result.disableEndpoint);
      }
    });
    let alerts = 0;
    let followUps = 0;
    await this.#ctx.store.db.transaction().execute(async (trx) => {
      await insertAttempts(trx, attempts);
      await finishAttempts(
        trx,
        outcomes.map(({ delivery, sent }, i) => ({
          ...states[i]!,
          id: delivery.id,
          lease: delivery.locked_until,
          provider_id: sent.tries.findLast((t) => t.providerId !== null)?.providerId ?? null,
        })),
      );
      const gone = outcomes.flatMap((o) => o.sent.goneDevices);
      if (gone.length > 0) {
        await deleteDevices(trx, gone);
        audit.push(
          ...gone.map((id) => ({
            at: now,
            actor: 'system' as const,
            action: 'device.removed',
            subject_type: 'device',
            subject_id: id,
            data: { reason: 'the push service says it is gone' },
          })),
        );
      }
      followUps = await insertFallbacks(
        trx,
        outcomes.filter((_, i) => states[i]!.status === 'dead').map((o) => o.delivery),
        now,
      );
      const circuits = await updateCircuits(trx, outcomes, breakerSettings(config), now);
      audit.push(...circuits.audit);
      const toDisable = [
        ...[...disable].map(([id, reason]) => ({ id, reason, details: {} })),
        ...[...circuits.disableEndpoints].map(([id, details]) => ({ id, reason: 'failing', details })),
      ];
      for (const { id, reason, details } of toDisable) {
        if (!(await disableEndpoint(trx, id, reason, now))) continue;
        const cancelled = await cancelPendingForEndpoint(trx, id, 'endpoint disabled', now);
        audit.push({
          at: now,
          actor: 'system',
          action: 'endpoint.disabled',
          subject_type: 'endpoint',
          subject_id: id,
          data: { reason, ...details, deliveries_cancelled: cancelled },
        });
      }
      alerts = await raiseAlerts(trx, circuits.alerts, now);
      await appendAudit(trx, audit);
    });
    if (alerts > 0) this.#ctx.store.notifier.publish('events', '');
    if (followUps > 0) this.#ctx.store.notifier.publish('deliveries', '');
  }
}

const AUDIT_ACTION = {
  succeeded: 'delivery.succeeded',
  dead: 'delivery.dead',
  pending: 'delivery.retry_scheduled',
  cancelled: 'delivery.cancelled',
} as const;

function scheduleFor(channel: string, config: Config): readonly number[] {
  return isUserChannel(channel) ? RETRY_SCHEDULES[channel] : config.webhookRetrySchedule;
}
