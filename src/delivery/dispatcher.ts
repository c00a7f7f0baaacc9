import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { DeliveryRow, EndpointRow } from '../db/tables.ts';
import { webhookPayload } from '../events/events.present.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import { cancelDeliveries, claimDueDeliveries, findEvents, nextDueAt } from './deliveries.repo.ts';
import { findEndpoints } from './endpoints.repo.ts';
import { OutcomeWriter } from './outcomes.ts';
import { createOutboundAgent } from './ssrf.ts';
import { sendWebhook } from './webhook.ts';

/** Most deliveries claimed in one statement. */
const BATCH = 200;
/** Most requests this node has in flight at once, over all endpoints. */
const GLOBAL_CAP = 256;
const POLL_MS = 1_000;
// Beyond the send itself (bounded by the timeout), time for its outcome to be committed before another node may
// take the delivery. Short, because it is also how long the deliveries of a crashed node wait.
const LEASE_MARGIN_MS = 10_000;

/** One claimed delivery, ready to send. */
interface Job {
  delivery: DeliveryRow;
  endpoint: EndpointRow;
  body: string;
  trigger: 'scheduled' | 'manual';
  /** Resolves when the outcome is written. */
  done: Promise<void>;
  finish: () => void;
}

/**
 * Sends due webhook deliveries. The database is the queue: deliveries are claimed with a lease, sent at once and
 * concurrently, and each outcome is recorded (attempt, new state, audit) before the delivery is let go.
 *
 * A claim takes for each endpoint no more than its free slots (`webhookEndpointConcurrency` minus what is in
 * flight), and leaves out endpoints with none, so nothing claimed ever waits here: a slow endpoint holds its
 * own slots and nothing else, and a lease only has to cover one send.
 */
export class Dispatcher {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;
  readonly #agent;
  readonly #writer: OutcomeWriter;
  readonly #timeoutMs: number;
  readonly #perEndpoint: number;
  /** Requests in flight, per endpoint. */
  readonly #inFlight = new Map<string, number>();
  /** Endpoints an answer disabled (410, `webhook-delivery: disable`) whose outcome is not committed yet. */
  readonly #disabling = new Map<string, number>();
  /** Jobs claimed whose outcome is not written yet. */
  readonly #jobs = new Set<Job>();
  #sending = 0;
  #stopping = false;
  /** Claims run one at a time (the loop's and runOnce's), so free slots are never handed out twice. */
  #claiming: Promise<unknown> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#timeoutMs = ctx.config.webhookTimeoutSeconds * 1000;
    this.#perEndpoint = ctx.config.webhookEndpointConcurrency;
    this.#agent = createOutboundAgent({ allow: ctx.config.outboundAllow, connectTimeoutMs: this.#timeoutMs });
    this.#writer = new OutcomeWriter(ctx);
    this.#loop = new WorkerLoop('dispatcher', ctx, () => this.#tick(), POLL_MS);
  }

  start(): void {
    this.#stopping = false;
    this.#unsubscribe ??= this.#ctx.store.notifier.subscribe('deliveries', () => this.wake());
    this.#loop.start();
  }

  /** Stops claiming, lets the sends in flight finish and waits until their outcomes are recorded. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.#loop.stop();
    await this.#claiming;
    await Promise.all([...this.#jobs].map((job) => job.done));
    await this.#writer.flush();
    await this.#agent.close();
  }

  /** Asks for a pass soon (deliveries were created or became due). */
  wake(): void {
    this.#loop.wake();
  }

  /** Claims one batch, sends it and waits until every outcome is recorded; returns how many were sent. For tests. */
  async runOnce(): Promise<number> {
    const { jobs } = await this.#claim();
    await Promise.all(jobs.map((j) => j.done));
    return jobs.length;
  }

  async #tick(): Promise<TickResult> {
    if (this.#stopping) return POLL_MS;
    // Full: a finishing send wakes the loop.
    if (this.#sending >= GLOBAL_CAP) return POLL_MS;
    const { claimed } = await this.#claim();
    if (claimed > 0) return 'busy';
    const next = await nextDueAt(this.#ctx.store.db, this.#ctx.clock.now());
    return next === undefined ? POLL_MS : next - this.#ctx.clock.now();
  }

  #claim(): Promise<{ jobs: Job[]; claimed: number }> {
    const run = this.#claiming.then(() => this.#claimNow(Math.min(BATCH, GLOBAL_CAP - this.#sending)));
    this.#claiming = run.catch(() => {});
    return run;
  }

  /** Claims up to `limit` due deliveries and starts them; `claimed` also counts those found cancelled. */
  async #claimNow(limit: number): Promise<{ jobs: Job[]; claimed: number }> {
    if (limit <= 0) return { jobs: [], claimed: 0 };
    const { store, clock } = this.#ctx;
    const now = clock.now();
    const busy = [...this.#inFlight].map(([id, count]) => [id, this.#perEndpoint - count] as const);
    const claimed = await claimDueDeliveries(store, {
      now,
      limit,
      perEndpoint: this.#perEndpoint,
      roomFor: new Map(busy.filter(([, room]) => room > 0)),
      excludeEndpoints: busy.filter(([, room]) => room <= 0).map(([id]) => id),
      lockedUntil: now + this.#timeoutMs + LEASE_MARGIN_MS,
      scan: Math.max(4 * limit, 1000),
    });
    if (claimed.length === 0) return { jobs: [], claimed: 0 };
    const endpointIds = unique(claimed.map((d) => d.endpoint_id!));
    const endpoints = new Map((await findEndpoints(store.db, endpointIds)).map((e) => [e.id, e]));
    const eventIds = unique(claimed.map((d) => d.event_id));
    const events = new Map((await findEvents(store.db, eventIds)).map((e) => [e.id, e]));
    const bodies = new Map<string, string>();
    const jobs: Job[] = [];
    const cancelled: Cancelled[] = [];
    for (const delivery of claimed) {
      const endpoint = endpoints.get(delivery.endpoint_id!);
      const event = events.get(delivery.event_id);
      if (endpoint === undefined) cancelled.push({ delivery, reason: 'endpoint deleted' });
      else if (endpoint.status !== 'enabled' || this.#disabling.has(endpoint.id)) {
        cancelled.push({ delivery, reason: 'endpoint disabled' });
      } else if (event === undefined) cancelled.push({ delivery, reason: 'event deleted' });
      else {
        let body = bodies.get(event.id);
        if (body === undefined) {
          body = JSON.stringify(webhookPayload(event));
          bodies.set(event.id, body);
        }
        jobs.push(newJob(delivery, endpoint, body));
      }
    }
    for (const job of jobs) this.#send(job);
    await this.#cancel(cancelled, now);
    return { jobs, claimed: claimed.length };
  }

  async #cancel(cancelled: Cancelled[], now: number): Promise<void> {
    if (cancelled.length === 0) return;
    await this.#ctx.store.db.transaction().execute(async (trx) => {
      for (const reason of unique(cancelled.map((c) => c.reason))) {
        const ids = cancelled.filter((c) => c.reason === reason).map((c) => c.delivery.id);
        await cancelDeliveries(trx, ids, reason, now);
      }
      await appendAudit(
        trx,
        cancelled.map(({ delivery, reason }) => ({
          at: now,
          actor: 'system' as const,
          action: 'delivery.cancelled',
          subject_type: 'delivery',
          subject_id: delivery.id,
          data: { endpoint_id: delivery.endpoint_id, event_id: delivery.event_id, reason },
        })),
      );
    });
  }

  #send(job: Job): void {
    const id = job.endpoint.id;
    this.#sending++;
    this.#inFlight.set(id, (this.#inFlight.get(id) ?? 0) + 1);
    this.#jobs.add(job);
    const attemptedAt = this.#ctx.clock.now();
    const message = {
      url: job.endpoint.url,
      secret: job.endpoint.secret,
      msgId: job.delivery.msg_id,
      body: job.body,
      at: attemptedAt,
    };
    const options = { dispatcher: this.#agent, timeoutMs: this.#timeoutMs, now: () => this.#ctx.clock.now() };
    void sendWebhook(message, options).then(async (result) => {
      const { metrics } = this.#ctx;
      metrics.deliveryAttempts.inc({ channel: 'webhook', outcome: result.outcome });
      metrics.deliveryLatency.observe({ channel: 'webhook' }, result.latencyMs / 1000);
      this.#sending--;
      const count = (this.#inFlight.get(id) ?? 1) - 1;
      if (count === 0) this.#inFlight.delete(id);
      else this.#inFlight.set(id, count);
      const disables = result.disableEndpoint !== null;
      if (disables) this.#disabling.set(id, (this.#disabling.get(id) ?? 0) + 1);
      // A slot is free: claim again (wake-ups coalesce, so a burst of finishing sends makes one claim).
      if (!this.#stopping) this.wake();
      await this.#writer.add({ delivery: job.delivery, trigger: job.trigger, attemptedAt, result });
      if (disables) {
        const left = this.#disabling.get(id)! - 1;
        if (left === 0) this.#disabling.delete(id);
        else this.#disabling.set(id, left);
      }
      this.#jobs.delete(job);
      job.finish();
    });
  }
}

interface Cancelled {
  delivery: DeliveryRow;
  reason: string;
}

function newJob(delivery: DeliveryRow, endpoint: EndpointRow, body: string): Job {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // A pending delivery with a completed_at was reopened by hand (see deliveries.repo.ts).
  const trigger = delivery.completed_at === null ? 'scheduled' : 'manual';
  return { delivery, endpoint, body, trigger, done, finish };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
