import type { Insertable } from 'kysely';
import { type AuditEntry, appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { newId } from '../ids.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import { matchesAnyType } from './patterns.ts';
import { type Decision, decide } from './recipients.ts';
import {
  claimEvents,
  enabledEndpoints,
  insertDeliveries,
  insertNotifications,
  markRouted,
} from './routing.repo.ts';
import { listEnabledRules } from './rules.repo.ts';

const BATCH = 500;
const POLL_MS = 1_000;
// Long enough for any batch; a batch routed twice after a lease ran out creates nothing twice (unique keys).
const LEASE_MS = 15_000;
// The routing summary kept on the event lists at most this many recipients by name (counts are always exact).
const LISTED_RECIPIENTS = 200;
// LISTEN/NOTIFY payloads must stay under 8,000 bytes.
const NOTIFY_BYTES = 7_000;

/**
 * Turns stored events into notifications and webhook deliveries. Each batch commits in one transaction:
 * notifications, deliveries, the routing decision on the event and its audit entries land together or
 * not at all, and a crash before the commit leaves the events to be claimed again.
 */
export class Router {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;
  #unsubscribe: (() => void) | undefined;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#loop = new WorkerLoop('router', ctx, () => this.#tick(), POLL_MS);
  }

  start(): void {
    this.#unsubscribe = this.#ctx.store.notifier.subscribe('events', () => this.#loop.wake());
    this.#loop.start();
  }

  wake(): void {
    this.#loop.wake();
  }

  async stop(): Promise<void> {
    this.#unsubscribe?.();
    await this.#loop.stop();
  }

  /** Routes one batch; returns how many events it routed. */
  async runOnce(): Promise<number> {
    const { store, clock } = this.#ctx;
    const now = clock.now();
    const events = await claimEvents(store, now, now + LEASE_MS, BATCH);
    if (events.length === 0) return 0;
    await this.#route(events);
    return events.length;
  }

  async #tick(): Promise<TickResult> {
    // A full batch means more may be waiting. Otherwise sleep until woken; the loop's poll also picks up
    // events whose lease ran out (a node died holding them).
    return (await this.runOnce()) === BATCH ? 'busy' : POLL_MS;
  }

  async #route(events: EventRow[]): Promise<void> {
    const { store, clock, metrics } = this.#ctx;
    const [rules, endpoints] = await Promise.all([listEnabledRules(store.db), enabledEndpoints(store.db)]);
    const decisions = await decide(store.db, events, rules);
    const now = clock.now();
    const notifications: Insertable<Database['notifications']>[] = [];
    const deliveries: Insertable<Database['deliveries']>[] = [];
    const audit: AuditEntry[] = [];
    for (const event of events) {
      const decision = decisions.get(event.id)!;
      for (const recipient of decision.recipients.values()) {
        notifications.push(notificationRow(event, recipient.userId, [...recipient.channels], now));
      }
      const targets = endpoints.filter((e) => matchesAnyType(e.types, event.type));
      for (const endpoint of targets) deliveries.push(deliveryRow(event, endpoint.id, now));
      // The decision is kept in the audit entry; `GET /v1/events/{id}` shows it from there.
      const summary = summarise(
        decision,
        targets.map((t) => t.id),
      );
      audit.push({
        at: now,
        actor: 'system',
        action: 'event.routed',
        subject_type: 'event',
        subject_id: event.id,
        data: summary,
      });
    }
    const created = await store.db.transaction().execute(async (trx) => {
      await markRouted(
        trx,
        events.map((e) => e.id),
        now,
      );
      await insertDeliveries(trx, deliveries);
      await appendAudit(trx, audit);
      // Sequence numbers last: on PostgreSQL they hold a lock until commit, so keep that stretch short.
      if (notifications.length === 0) return 0;
      const first = await store.allocateSeq(trx, notifications.length);
      notifications.forEach((n, i) => {
        n.seq = first + i;
        n.created_seq = first + i;
      });
      return insertNotifications(trx, notifications);
    });
    metrics.eventsRouted.inc(events.length);
    metrics.notificationsCreated.inc(created);
    if (notifications.length > 0) this.#announce([...new Set(notifications.map((n) => n.user_id))]);
    if (deliveries.length > 0) store.notifier.publish('deliveries', '');
  }

  /** Tells inbox streams (on every node) which users have something new, in payloads small enough for NOTIFY. */
  #announce(userIds: string[]): void {
    let chunk: string[] = [];
    let bytes = 0;
    for (const id of userIds) {
      if (bytes + id.length + 1 > NOTIFY_BYTES && chunk.length > 0) {
        this.#ctx.store.notifier.publish('inbox', chunk.join(','));
        chunk = [];
        bytes = 0;
      }
      chunk.push(id);
      bytes += id.length + 1;
    }
    if (chunk.length > 0) this.#ctx.store.notifier.publish('inbox', chunk.join(','));
  }
}

function notificationRow(
  event: EventRow,
  userId: string,
  channels: string[],
  now: number,
): Insertable<Database['notifications']> {
  return {
    id: newId('ntf', now),
    event_id: event.id,
    user_id: userId,
    source_id: event.source_id,
    type: event.type,
    severity: event.severity,
    title: event.title ?? event.summary ?? event.type,
    summary: event.summary,
    url: event.url,
    channels: JSON.stringify(channels.sort()),
    state: 'unread',
    seq: 0,
    created_seq: 0,
    created_at: now,
    updated_at: now,
    read_at: null,
    archived_at: null,
  };
}

function deliveryRow(event: EventRow, endpointId: string, now: number): Insertable<Database['deliveries']> {
  return {
    id: newId('dlv', now),
    event_id: event.id,
    channel: 'webhook',
    endpoint_id: endpointId,
    // One message id per event, kept by every attempt and every endpoint (Standard Webhooks `webhook-id`).
    msg_id: `msg_${event.id.slice(4)}`,
    status: 'pending',
    attempt_count: 0,
    next_attempt_at: now,
    locked_until: 0,
    last_status_code: null,
    last_error: null,
    created_at: now,
    updated_at: now,
    completed_at: null,
  };
}

/** The routing decision as stored on the event and shown by `GET /v1/events/{id}`. */
function summarise(decision: Decision, endpoints: string[]) {
  const recipients = [...decision.recipients.values()];
  return {
    recipient_count: recipients.length,
    recipients: recipients.slice(0, LISTED_RECIPIENTS).map((r) => ({
      user_id: r.userId,
      channels: [...r.channels].sort(),
      via: r.via,
    })),
    unresolved: decision.unresolved,
    rules_matched: decision.rules,
    endpoints,
  };
}
