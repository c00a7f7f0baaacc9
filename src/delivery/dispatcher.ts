import { performance } from 'node:perf_hooks';
import { USER_CHANNELS } from '../channels/registry.ts';
import type { Context } from '../context.ts';
import { type Keys, loadKeys } from '../settings/keys.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import { AHEAD, type LaneState, plainLane, planClaim } from './claim-plan.ts';
import {
  claimDueDeliveries,
  claimLaneDeliveries,
  claimOrderedHeads,
  nextDueAt,
  releaseDeliveries,
} from './claims.repo.ts';
import { type Job, prepareJobs } from './jobs.ts';
import { type LaneRules, loadLaneRules } from './lanes.repo.ts';
import { OutcomeWriter } from './outcomes.ts';
import { Senders } from './senders.ts';
import { allowList, createOutboundAgent } from './ssrf.ts';

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

/**
 * Sends due deliveries on every channel. The database is the queue: deliveries are claimed with a lease, sent
 * concurrently, and each outcome is recorded (attempts, new state, circuits, audit) before the delivery is let
 * go.
 *
 * Deliveries run in lanes: one per outbound endpoint and one per user channel (email, push, sms). A lane has
 * its concurrency (`webhookEndpointConcurrency` for endpoints, 1 for ordered ones), an optional rate limit and
 * a circuit. A claim takes for a lane with a free slot up to AHEAD (4) times its concurrency, less what this node holds
 * for it, so the next round is in hand when a slot frees; lanes with every slot busy, and paused lanes, are
 * left out. A slow endpoint therefore never holds more than AHEAD times its concurrency, and a claimed job that has
 * not started within a few seconds is given back rather than sent late (its lease covers one send only).
 */
export class Dispatcher {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;
  readonly #agent;
  readonly #allow;
  readonly #writer: OutcomeWriter;
  readonly #timeoutMs: number;
  readonly #perEndpoint: number;
  readonly #lanes = new Map<string, LaneState>();
  /** Endpoints an answer disabled (410, `webhook-delivery: disable`) before the outcome was committed. */
  readonly #disabling = new Set<string>();
  /** Jobs not over yet. */
  readonly #jobs = new Set<Job>();
  #keys: Keys | undefined;
  #rules: { at: number; rules: Map<string, LaneRules> } | undefined;
  /** New deliveries were announced since the last claim. */
  #announced = true;
  #idleClaimAt = 0;
  /** How long until the next claim over all lanes while few lanes are in work: grows while it finds nothing. */
  #idleClaimEvery = IDLE_CLAIM_MS;
  #senders: Senders | undefined;
  #stopping = false;
  /** Claims run one at a time (the loop's and runOnce's), so room is never handed out twice. */
  #claiming: Promise<unknown> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;

  constructor(ctx: Context) {
    this.#ctx = ctx;
    this.#timeoutMs = ctx.config.webhookTimeoutSeconds * 1000;
    this.#perEndpoint = ctx.config.webhookEndpointConcurrency;
    this.#allow = allowList(ctx.config.outboundAllow);
    this.#agent = createOutboundAgent({ allow: ctx.config.outboundAllow, connectTimeoutMs: this.#timeoutMs });
    this.#writer = new OutcomeWriter(ctx);
    this.#loop = new WorkerLoop('dispatcher', ctx, () => this.#tick(), POLL_MS);
  }

  start(): void {
    this.#stopping = false;
    this.#unsubscribe ??= this.#ctx.store.notifier.subscribe('deliveries', (payload) => {
      // The router names the lanes it gave work to ('' says nothing). Work for lanes this node is working
      // through reaches them by the claims by name; only work elsewhere calls for the claim over all lanes.
      if (payload === '' || payload.split(',').some((lane) => !this.#inWork(lane))) this.#announce();
      this.wake();
    });
    this.#loop.start();
  }

  /** Stops claiming, gives back what has not started, lets sends in flight finish and records their outcomes. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    await this.#loop.stop();
    await this.#claiming;
    for (const lane of this.#lanes.values()) clearTimeout(lane.timer);
    const queued = [...this.#lanes.values()].flatMap((lane) => lane.queue.splice(0));
    await this.#giveBack(queued);
    await Promise.all([...this.#jobs].map((job) => job.done));
    await this.#writer.flush();
    await this.#senders?.close();
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
    if (this.#jobs.size >= GLOBAL_CAP) return POLL_MS;
    // Cancelled deliveries count too: the batch was used, so more may be due.
    if ((await this.#claim()).claimed > 0) return 'busy';
    const next = await nextDueAt(this.#ctx.store.db, this.#ctx.clock.now());
    return next === undefined ? POLL_MS : Math.min(next - this.#ctx.clock.now(), POLL_MS);
  }

  #claim(): Promise<{ jobs: Job[]; claimed: number }> {
    const run = this.#claiming.then(() => this.#claimNow());
    this.#claiming = run.catch(() => {});
    return run;
  }

  /** Claims what there is room for and starts it; `claimed` also counts deliveries found cancelled. */
  async #claimNow(): Promise<{ jobs: Job[]; claimed: number }> {
    const limit = Math.min(BATCH, GLOBAL_CAP - this.#jobs.size);
    if (limit <= 0) return { jobs: [], claimed: 0 };
    const { store, clock } = this.#ctx;
    this.#keys ??= await loadKeys(store.db);
    const now = clock.now();
    const rules = await this.#laneRules(now);
    // Lanes with rules of their own take part even before they hold work (user channels always do).
    for (const id of rules.keys()) this.#lane(id);
    for (const [id, lane] of this.#lanes) lane.rules = rules.get(id) ?? plainLane(this.#perEndpoint);
    const real = performance.now();
    const { roomFor, exclude, orderedHeads, targeted, workingLanes, workingWithRoom, workingRoom } =
      planClaim(this.#lanes, this.#perEndpoint, real);
    // Every lane being worked on is full: a claim now could only find other lanes' work, and to do so it reads
    // past the full lanes' backlog. Do that at most every #idleClaimEvery, or at once when work was announced.
    const announced = this.#announced;
    const idleClaimDue = real - this.#idleClaimAt >= this.#idleClaimEvery;
    if (workingLanes > 0 && !workingWithRoom && orderedHeads.length === 0 && !announced) {
      if (!idleClaimDue) return { jobs: [], claimed: 0 };
      this.#idleClaimAt = real;
    }
    this.#announced = false;
    const lockedUntil = now + this.#timeoutMs + LEASE_MARGIN_MS;
    const claimed = await claimOrderedHeads(store, orderedHeads, now, lockedUntil);
    // While only a few lanes are in work (one busy endpoint, say), each is claimed for by name, which costs
    // little, and the claim over all lanes, which finds work elsewhere, runs only every IDLE_CLAIM_MS or when
    // work was announced. With many lanes in work, the one claim over all lanes serves them all at once.
    const few = targeted.length > 0 && workingLanes <= TARGETED_LANES;
    if (few) {
      for (const [id, room] of targeted) {
        if (claimed.length >= limit) break;
        claimed.push(
          ...(await claimLaneDeliveries(store, id, Math.min(room, limit - claimed.length), now, lockedUntil)),
        );
        exclude.push(id);
      }
    }
    const rest = limit - claimed.length;
    if (rest > 0 && (!few || announced || idleClaimDue)) {
      if (few) this.#idleClaimAt = real;
      const found = await claimDueDeliveries(store, {
        now,
        limit: rest,
        perLane: AHEAD * this.#perEndpoint,
        roomFor,
        excludeLanes: exclude,
        lockedUntil,
        // Enough candidates for the lanes in work and one new lane: the window over them is the claim's cost.
        scan: Math.min(2 * rest, 2 * workingRoom + 2 * AHEAD * this.#perEndpoint),
      });
      claimed.push(...found);
      // Past a large backlog of the lanes in work, finding nothing elsewhere costs a walk over all of it: while
      // that is all it finds, look less often (retries falling due elsewhere can wait a moment).
      if (few)
        this.#idleClaimEvery =
          found.length > 0 ? IDLE_CLAIM_MS : Math.min(2 * this.#idleClaimEvery, IDLE_CLAIM_MAX_MS);
    }
    if (claimed.length === 0) return { jobs: [], claimed: 0 };
    // Oldest first (RETURNING has no order).
    claimed.sort((a, b) => a.next_attempt_at - b.next_attempt_at || (a.id < b.id ? -1 : 1));
    const jobs = await prepareJobs(this.#ctx, this.#keys, claimed, this.#disabling);
    for (const job of jobs) {
      this.#jobs.add(job);
      this.#lane(job.delivery.lane).queue.push(job);
    }
    for (const lane of new Set(jobs.map((job) => job.delivery.lane))) this.#pump(lane);
    return { jobs, claimed: claimed.length };
  }

  /**
   * Lane rules change rarely (an endpoint edited, a circuit opening), so they are read at most every
   * LANE_RULES_MS; an outcome that changes a circuit on this node drops them at once.
   */
  async #laneRules(now: number): Promise<Map<string, LaneRules>> {
    if (this.#rules === undefined || now - this.#rules.at >= LANE_RULES_MS || now < this.#rules.at) {
      this.#rules = { at: now, rules: await loadLaneRules(this.#ctx.store.db, this.#perEndpoint, now) };
    }
    return this.#rules.rules;
  }

  /** Work was announced for lanes this node is not working through: the next claim looks over all lanes. */
  #announce(): void {
    this.#announced = true;
    this.#idleClaimEvery = IDLE_CLAIM_MS;
  }

  /** Whether this node holds work of the lane (in flight or queued): its claims by name reach new work of it. */
  #inWork(id: string): boolean {
    const lane = this.#lanes.get(id);
    return lane !== undefined && lane.inFlight + lane.queue.length > 0;
  }

  #lane(id: string): LaneState {
    let lane = this.#lanes.get(id);
    if (lane === undefined) {
      lane = {
        inFlight: 0,
        lastDoneAt: Number.NEGATIVE_INFINITY,
        queue: [],
        rules: plainLane(this.#perEndpoint),
        nextStartAt: 0,
        timer: undefined,
      };
      this.#lanes.set(id, lane);
    }
    return lane;
  }

  /** Starts queued jobs of a lane while it has free slots; gives back the ones too late to start. */
  #pump(id: string): void {
    const lane = this.#lane(id);
    const late: Job[] = [];
    const { rateLimit } = lane.rules;
    while (lane.inFlight < lane.rules.concurrency && lane.queue.length > 0 && !this.#stopping) {
      const now = this.#ctx.clock.now();
      if (rateLimit !== null && lane.nextStartAt > now) {
        // Out of tokens: come back when the next request may start.
        lane.timer ??= setTimeout(() => {
          lane.timer = undefined;
          this.#pump(id);
        }, lane.nextStartAt - now);
        break;
      }
      const job = lane.queue.shift()!;
      const startBy = job.delivery.locked_until - this.#timeoutMs - COMMIT_SLACK_MS;
      if (now > startBy) late.push(job);
      else {
        if (rateLimit !== null) lane.nextStartAt = Math.max(lane.nextStartAt, now) + 1000 / rateLimit;
        this.#send(job, lane, id);
      }
    }
    // A rate-limited lane is kept until its next slot comes, or the next claim would start a fresh count.
    const idle = lane.inFlight === 0 && lane.queue.length === 0 && lane.timer === undefined;
    if (idle && !this.#isFixed(id) && lane.nextStartAt <= this.#ctx.clock.now()) this.#lanes.delete(id);
    if (late.length > 0) void this.#giveBack(late);
  }

  /** User-channel lanes always exist; endpoint lanes come and go with their work. */
  #isFixed(id: string): boolean {
    return (USER_CHANNELS as readonly string[]).includes(id);
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

  #send(job: Job, lane: LaneState, id: string): void {
    lane.inFlight++;
    job.attempted = true;
    const attemptedAt = this.#ctx.clock.now();
    this.#senders ??= new Senders(this.#ctx, this.#keys!, this.#agent, this.#allow);
    void this.#senders.send(job).then(async (sent) => {
      const { metrics } = this.#ctx;
      const channel = job.delivery.channel;
      metrics.deliveryAttempts.inc({ channel, outcome: sent.result.outcome });
      metrics.deliveryLatency.observe({ channel }, sent.result.latencyMs / 1000);
      const endpointId = job.delivery.endpoint_id;
      if (sent.result.disableEndpoint !== null && endpointId !== null) {
        this.#disabling.add(endpointId);
        // What waits for this endpoint is given back; the next claim cancels it.
        void this.#giveBack(lane.queue.splice(0));
      }
      lane.inFlight--;
      lane.lastDoneAt = performance.now();
      this.#pump(id);
      // Claim again before the lane runs dry (less than one round queued), so its slots never wait for a claim;
      // or (below) when the node was full. Wake-ups coalesce, so a burst of finishing sends makes one claim.
      if (lane.queue.length < lane.rules.concurrency && !this.#stopping) this.wake();
      await this.#writer.add({ delivery: job.delivery, trigger: job.trigger, attemptedAt, sent });
      // A failure may have opened a circuit, a probe's success closed one: read the lane rules afresh.
      if (sent.result.outcome !== 'succeeded' || lane.rules.probing) this.#rules = undefined;
      if (sent.result.disableEndpoint !== null && endpointId !== null) this.#disabling.delete(endpointId);
      this.#jobs.delete(job);
      job.finish();
      if (this.#jobs.size === GLOBAL_CAP - 1 && !this.#stopping) this.wake();
    });
  }
}

const LANE_RULES_MS = 1_000;
const IDLE_CLAIM_MS = 25;
const IDLE_CLAIM_MAX_MS = 1_000;
/** While at most this many lanes are in work, each is claimed for by name. */
const TARGETED_LANES = 2;
