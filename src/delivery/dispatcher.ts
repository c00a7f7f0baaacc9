import type { Context } from '../context.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import { claimDueDeliveries, nextDueAt, releaseDeliveries } from './deliveries.repo.ts';
import { type Job, prepareJobs } from './jobs.ts';
import { OutcomeWriter } from './outcomes.ts';
import { createOutboundAgent } from './ssrf.ts';
import { sendWebhook } from './webhook.ts';

/** Most deliveries claimed in one statement. */
const BATCH = 200;
/** Most deliveries this node holds (in flight or about to be) at once, over all endpoints. */
const GLOBAL_CAP = 256;
const POLL_MS = 1_000;
// A lease covers one send (bounded by the timeout) plus this margin. Short, because it is also how long the
// deliveries a crashed node held wait before another node takes them.
const LEASE_MARGIN_MS = 10_000;
// Time kept in hand after a send for its outcome to be committed; a job that could not start before its lease
// minus this (and the timeout) is given back unsent.
const COMMIT_SLACK_MS = 5_000;

interface EndpointState {
  inFlight: number;
  /** Claimed, waiting for a free slot of this endpoint. */
  queue: Job[];
}

/**
 * Sends due webhook deliveries. The database is the queue: deliveries are claimed with a lease, sent
 * concurrently, and each outcome is recorded (attempt, new state, audit) before the delivery is let go.
 *
 * At most `webhookEndpointConcurrency` requests are in flight per endpoint. A claim takes for an endpoint with a
 * free slot up to twice that, less what this node holds for it, so the next round is in hand when a slot frees;
 * endpoints with every slot busy are left out. A slow endpoint therefore never holds more than twice its
 * concurrency, and a claimed job that has not started within a few seconds is given back rather than sent late
 * (its lease covers one send only).
 */
export class Dispatcher {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;
  readonly #agent;
  readonly #writer: OutcomeWriter;
  readonly #timeoutMs: number;
  readonly #perEndpoint: number;
  readonly #endpoints = new Map<string, EndpointState>();
  /** Endpoints an answer disabled (410, `webhook-delivery: disable`) before the outcome was committed. */
  readonly #disabling = new Set<string>();
  /** Jobs not over yet. */
  readonly #jobs = new Set<Job>();
  #stopping = false;
  /** Claims run one at a time (the loop's and runOnce's), so room is never handed out twice. */
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

  /** Stops claiming, gives back what has not started, lets sends in flight finish and records their outcomes. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.#loop.stop();
    await this.#claiming;
    const queued = [...this.#endpoints.values()].flatMap((state) => state.queue.splice(0));
    await this.#giveBack(queued);
    await Promise.all([...this.#jobs].map((job) => job.done));
    await this.#writer.flush();
    await this.#agent.close();
  }

  /** Asks for a pass soon (deliveries were created or became due). */
  wake(): void {
    this.#loop.wake();
  }

  /** Claims one batch, sends it and waits until every outcome is recorded; returns how many were attempted. For tests. */
  async runOnce(): Promise<number> {
    const { jobs } = await this.#claim();
    await Promise.all(jobs.map((j) => j.done));
    return jobs.filter((j) => j.attempted).length;
  }

  async #tick(): Promise<TickResult> {
    if (this.#stopping) return POLL_MS;
    // Full: a finishing send wakes the loop.
    if (this.#held() >= GLOBAL_CAP) return POLL_MS;
    // Cancelled deliveries count too: the batch was used, so more may be due.
    if ((await this.#claim()).claimed > 0) return 'busy';
    const next = await nextDueAt(this.#ctx.store.db, this.#ctx.clock.now());
    return next === undefined ? POLL_MS : next - this.#ctx.clock.now();
  }

  #held(): number {
    return this.#jobs.size;
  }

  #claim(): Promise<{ jobs: Job[]; claimed: number }> {
    const run = this.#claiming.then(() => this.#claimNow());
    this.#claiming = run.catch(() => {});
    return run;
  }

  /** Claims what there is room for and starts it; `claimed` also counts deliveries found cancelled. */
  async #claimNow(): Promise<{ jobs: Job[]; claimed: number }> {
    const limit = Math.min(BATCH, GLOBAL_CAP - this.#held());
    if (limit <= 0) return { jobs: [], claimed: 0 };
    const { store, clock } = this.#ctx;
    const now = clock.now();
    const allowance = 2 * this.#perEndpoint;
    const roomFor = new Map<string, number>();
    for (const [id, state] of this.#endpoints) {
      roomFor.set(
        id,
        state.inFlight < this.#perEndpoint ? allowance - state.inFlight - state.queue.length : 0,
      );
    }
    const claimed = await claimDueDeliveries(store, {
      now,
      limit,
      perEndpoint: allowance,
      roomFor: new Map([...roomFor].filter(([, room]) => room > 0)),
      excludeEndpoints: [...roomFor].filter(([, room]) => room <= 0).map(([id]) => id),
      lockedUntil: now + this.#timeoutMs + LEASE_MARGIN_MS,
      scan: 2 * limit,
    });
    if (claimed.length === 0) return { jobs: [], claimed: 0 };
    // Oldest first (RETURNING has no order).
    claimed.sort((a, b) => a.next_attempt_at - b.next_attempt_at || (a.id < b.id ? -1 : 1));
    const jobs = await prepareJobs(this.#ctx, claimed, this.#disabling);
    for (const job of jobs) {
      this.#jobs.add(job);
      this.#state(job.endpoint.id).queue.push(job);
    }
    for (const id of new Set(jobs.map((job) => job.endpoint.id))) this.#pump(id);
    return { jobs, claimed: claimed.length };
  }

  #state(endpointId: string): EndpointState {
    let state = this.#endpoints.get(endpointId);
    if (state === undefined) {
      state = { inFlight: 0, queue: [] };
      this.#endpoints.set(endpointId, state);
    }
    return state;
  }

  /** Starts queued jobs of an endpoint while it has free slots; gives back the ones too late to start. */
  #pump(endpointId: string): void {
    const state = this.#state(endpointId);
    const late: Job[] = [];
    while (state.inFlight < this.#perEndpoint && state.queue.length > 0 && !this.#stopping) {
      const job = state.queue.shift()!;
      const startBy = job.delivery.locked_until - this.#timeoutMs - COMMIT_SLACK_MS;
      if (this.#ctx.clock.now() > startBy) late.push(job);
      else this.#send(job, state);
    }
    if (state.inFlight === 0 && state.queue.length === 0) this.#endpoints.delete(endpointId);
    if (late.length > 0) void this.#giveBack(late);
  }

  /** Gives claimed jobs back unsent: their deliveries are due again at once, for any node. */
  async #giveBack(jobs: Job[]): Promise<void> {
    for (const lease of new Set(jobs.map((job) => job.delivery.locked_until))) {
      const ids = jobs.filter((job) => job.delivery.locked_until === lease).map((job) => job.delivery.id);
      await releaseDeliveries(this.#ctx.store.db, ids, lease).catch((error) =>
        this.#ctx.log.error({ err: error }, 'giving deliveries back failed; their lease will run out'),
      );
    }
    for (const job of jobs) {
      this.#jobs.delete(job);
      job.finish();
    }
  }

  #send(job: Job, state: EndpointState): void {
    const id = job.endpoint.id;
    state.inFlight++;
    job.attempted = true;
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
      if (result.disableEndpoint !== null) {
        this.#disabling.add(id);
        // What waits for this endpoint is given back; the next claim cancels it.
        void this.#giveBack(state.queue.splice(0));
      }
      state.inFlight--;
      this.#pump(id);
      // Claim again when it can take something: this endpoint has a free slot and nothing queued, or (below) the
      // node was full. Wake-ups coalesce, so a burst of finishing sends makes one claim.
      if (state.inFlight < this.#perEndpoint && !this.#stopping) this.wake();
      await this.#writer.add({ delivery: job.delivery, trigger: job.trigger, attemptedAt, result });
      if (result.disableEndpoint !== null) this.#disabling.delete(id);
      this.#jobs.delete(job);
      job.finish();
      if (this.#held() === GLOBAL_CAP - 1 && !this.#stopping) this.wake();
    });
  }
}
