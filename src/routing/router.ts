import type { Insertable, Transaction } from 'kysely';
import { type AuditEntry, appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import { publishIds } from '../db/notifier.ts';
import type { Database, EventRow } from '../db/tables.ts';
import { newDelivery } from '../delivery/deliveries.repo.ts';
import { userDelivery } from '../delivery/fallback.ts';
import { startEscalations } from '../escalation/start.ts';
import { applyNoise } from '../noise/apply.ts';
import { eventTitle, newNotification } from '../notifications/notifications.repo.ts';
import { announceQueueItems } from '../queues/queues.live.ts';
import { createQueueItems } from '../queues/queues.repo.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import { closedAtRouting } from './closed.ts';
import { decideBatch, type EventDecision } from './decision.ts';
import { routingSummary } from './explain.ts';
import { matchesAnyType } from './patterns.ts';
import {
  claimEvents,
  enabledEndpoints,
  insertDeliveries,
  insertNotifications,
  markRouted,
} from './routing.repo.ts';
import { applyRuleActions } from './rule-actions.ts';
import { listEnabledRules, type Rule } from './rules.repo.ts';

const BATCH = 500;
const POLL_MS = 1_000;
// Events arriving together are routed together: far fewer, larger transactions under a stream of requests,
// for a few milliseconds of latency.
const SETTLE_MS = 4;
// Long enough for any batch; a batch routed twice after a lease ran out creates nothing twice (unique keys).
const LEASE_MS = 15_000;

/**
 * Turns stored events into notifications and webhook deliveries. Each batch commits in one transaction:
 * notifications, deliveries, the routing decision on the event and its audit entries land together or
 * not at all, and a crash before the commit leaves the events to be claimed again. The deciding happens
 * before that transaction, so on SQLite the workers' write turn (which ingest waits for) is only the writing.
 */
export class Router {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#loop = new WorkerLoop('router', ctx, () => this.#tick(), POLL_MS, {
      wakeOn: 'events',
      settleMs: SETTLE_MS,
    });
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /**
   * Routes one batch; returns how many events it routed. Three steps, so the write turn is only the writing:
   * claim a batch (see claimEvents), decide and build its rows from reads alone, then commit the results in one
   * transaction: notifications, deliveries, the routing decision (audit) and the events' status land together
   * or not at all. A crash before that commit leaves the events pending (on PostgreSQL, leased until the lease
   * runs out), and a later pass takes them again.
   */
  async runOnce(): Promise<number> {
    const { store, clock, metrics } = this.#ctx;
    const now = clock.now();
    const { events, lease } = await claimEvents(store, now, now + LEASE_MS, BATCH);
    if (events.length === 0) return 0;
    const plan = await this.#plan(events, now);
    const result = await store.db.transaction().execute((trx) => this.#commit(trx, plan, lease, now));
    metrics.eventsRouted.inc(result.routed);
    metrics.notificationsCreated.inc(result.created);
    publishIds(store.notifier, 'inbox', result.users);
    // Naming the lanes lets a dispatcher already working through them skip looking for work elsewhere.
    publishIds(store.notifier, 'deliveries', result.lanes);
    announceQueueItems(store.notifier, result.queued);
    return events.length;
  }

  async #tick(): Promise<TickResult> {
    // A full batch means more may be waiting. Otherwise sleep until woken; the loop's poll also picks up
    // events whose lease ran out (a node died holding them).
    return (await this.runOnce()) === BATCH ? 'busy' : POLL_MS;
  }

  /**
   * Decides a claimed batch and builds the rows that carry the decision out, reading only: the same decision
   * the explain API shows (src/routing/decision.ts).
   */
  async #plan(events: EventRow[], now: number): Promise<Plan> {
    const { db } = this.#ctx.store;
    const [rules, endpoints] = await Promise.all([listEnabledRules(db), enabledEndpoints(db)]);
    const decisions = await decideBatch(db, events, rules);
    const notifications: Insertable<Database['notifications']>[] = [];
    const deliveries: Insertable<Database['deliveries']>[] = [];
    const audit: AuditEntry[] = [];
    for (const event of events) {
      const decision = decisions.get(event.id)!;
      // Closed by its source before it was routed (see closed.ts).
      const closed = closedAtRouting(event);
      for (const plan of decision.recipients.values()) {
        // Held back by a decision step (noise control), which takes care of it.
        if (plan.held !== undefined || closed?.notified === false) continue;
        const notification = newNotification(
          {
            event_id: event.id,
            user_id: plan.userId,
            source_id: event.source_id,
            type: event.type,
            severity: event.severity,
            title: eventTitle(event),
            summary: event.summary,
            url: event.url,
            channels: plan.channels,
          },
          now,
        );
        // Following informs; the event's actions are for those it was addressed or routed to.
        if (plan.via.every((route) => route.startsWith('subscription:'))) notification.actionable = 0;
        notifications.push(notification);
        for (const [first, ...rest] of plan.chains) {
          deliveries.push(
            userDelivery({
              eventId: event.id,
              notificationId: notification.id,
              userId: plan.userId,
              channel: first!,
              fallback: rest,
              now,
            }),
          );
        }
      }
      const targets = endpoints.filter((e) => matchesAnyType(e.types, event.type));
      for (const endpoint of targets) {
        const delivery = newDelivery(
          {
            event_id: event.id,
            channel: endpoint.kind,
            endpoint_id: endpoint.id,
            lane: endpoint.id,
            // One message id per event, kept by every attempt and every endpoint (Standard Webhooks `webhook-id`).
            msg_id: `msg_${event.id.slice(4)}`,
          },
          now,
        );
        deliveries.push(delivery);
      }
      // The decision is kept in the audit entry; `GET /v1/events/{id}` shows it from there.
      audit.push({
        at: now,
        actor: 'system',
        action: 'event.routed',
        subject_type: 'event',
        subject_id: event.id,
        data: {
          ...routingSummary(
            decision,
            targets.map((t) => t.id),
          ),
          ...(closed === undefined ? {} : { closed }),
        },
      });
    }
    return { events, rules, decisions, notifications, deliveries, audit };
  }

  /**
   * Writes a planned batch in `trx`, for the events still under this pass's lease (all of them, unless the
   * lease ran out and another node took some); returns what the caller announces after the commit.
   */
  async #commit(trx: Transaction<Database>, planned: Plan, lease: number, now: number) {
    const routed = await markRouted(trx, planned.events, lease, now);
    const { rules, decisions, notifications, deliveries, audit, events } =
      routed.size === planned.events.length ? planned : onlyFor(planned, routed);
    await applyRuleActions(trx, decisions, rules);
    // Noise control (src/noise): holds back, folds in or defers part of what was planned, in place. It reads
    // and writes its own state (open notifications, grouping windows), so it runs here, in the transaction.
    const noise = await applyNoise(
      trx,
      this.#ctx.store,
      {
        events,
        via: (eventId, userId) => decisions.get(eventId)?.recipients.get(userId)?.via ?? [],
        notifications,
        deliveries,
        audit,
      },
      now,
    );
    // Escalation (src/escalation): freezes each event's policy onto it and schedules its timers.
    // Not for events their source already closed, acknowledged included.
    const open = events.filter((e) => e.resolution === null);
    await startEscalations(trx, { events: open, decisions, rules, notifications }, now);
    // Shared queues (src/queues): one item per event and queue group, instead of a notification per member.
    const queued = await createQueueItems(trx, decisions, now);
    await insertDeliveries(trx, deliveries);
    await appendAudit(trx, audit);
    let created = 0;
    // Sequence numbers last: on PostgreSQL they hold a lock until commit, so keep that stretch short.
    if (notifications.length > 0) {
      const first = await this.#ctx.store.allocateSeq(trx, notifications.length);
      notifications.forEach((n, i) => {
        n.seq = first + i;
        n.created_seq = first + i;
      });
      created = await insertNotifications(trx, notifications);
    }
    return {
      routed: events.length,
      created,
      lanes: new Set(deliveries.map((d) => d.lane)),
      queued,
      users: [...new Set([...notifications.map((n) => n.user_id), ...noise.updatedUsers])],
    };
  }
}

/** A batch decided and turned into rows, not yet written. */
interface Plan {
  events: EventRow[];
  rules: Rule[];
  decisions: Map<string, EventDecision>;
  notifications: Insertable<Database['notifications']>[];
  deliveries: Insertable<Database['deliveries']>[];
  audit: AuditEntry[];
}

/** The part of a plan that concerns the events in `ids`. */
function onlyFor(plan: Plan, ids: ReadonlySet<string>): Plan {
  return {
    events: plan.events.filter((e) => ids.has(e.id)),
    rules: plan.rules,
    decisions: new Map([...plan.decisions].filter(([id]) => ids.has(id))),
    notifications: plan.notifications.filter((n) => ids.has(n.event_id)),
    deliveries: plan.deliveries.filter((d) => ids.has(d.event_id)),
    audit: plan.audit.filter((a) => ids.has(a.subject_id)),
  };
}
