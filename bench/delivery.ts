import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { startHerald } from './processes.ts';
import type { PathStats, ReceiverReply, SampleRequest, StatsQuery } from './receiver.ts';
import { sampleResources } from './resources.ts';
import { api, putEndpoint, setUpHerald } from './setup.ts';

/** The webhook receiver child process (bench/receiver.ts). */
export interface Receiver {
  readonly url: string;
  readonly pid: number;
  /** What arrived on the paths that start with `prefix`, and one request as it arrived. */
  stats(prefix: string): Promise<{ paths: Record<string, PathStats>; sample: SampleRequest | null }>;
  stop(): Promise<void>;
}

/** One delivery phase: `events` published through the batch API to a fresh Herald with `endpoints` endpoints. */
export interface DeliveryFigures {
  endpoints: number;
  /** Endpoints answering after a delay (their deliveries are not counted below). */
  slow_endpoints: number;
  events: number;
  /** Deliveries to the fast endpoints: events × endpoints. */
  expected: number;
  /** Distinct messages the fast endpoints received by the end (all of them unless `complete` is false). */
  delivered: number;
  complete: boolean;
  /** Requests beyond the first of a message (retries). */
  duplicates: number;
  /** From the first publish request to the last batch answered. */
  publish_s: number;
  /** From the first publish request to the first delivery (null: none arrived). */
  first_delivery_s: number | null;
  /** From the first publish request to the last expected delivery (or to the time-out). */
  complete_s: number;
  deliveries_per_s: number;
  /** Messages the slow endpoints received meanwhile. */
  slow_delivered: number;
  /** CPU from the first publish to the end, 100 = one core. */
  cpu_percent: { herald: number; receiver: number; load_generator: number };
}

/** A plain undici client posting Herald's webhook bytes to the receiver: what receiver and loopback take. */
export interface ReceiverCapacity {
  connections: number;
  duration_s: number;
  requests: number;
  requests_per_s: number;
  errors: number;
  body_bytes: number;
}

export interface DeliveryOptions {
  /** Names the phase's paths at the receiver. */
  name: string;
  endpoints: number;
  events: number;
  slowEndpoints?: number;
  /** Most time to wait for the deliveries after the first publish. */
  timeoutS: number;
}

const EVENT_TYPE = 'bench.delivery';
const BATCH_SIZE = 1000;
const PUBLISH_CONCURRENCY = 2;
const POLL_MS = 25;
const STOP_GRACE_MS = 5_000;

const epochMs = () => performance.timeOrigin + performance.now();

/** What the delivery phases measured; a phase that failed is missing. */
export interface DeliveryResults {
  receiver_capacity?: ReceiverCapacity;
  endpoints_1?: DeliveryFigures;
  endpoints_100?: DeliveryFigures;
  /** The 10-endpoint runs, each right before a run of {@link with_slow_endpoint}. */
  endpoints_10: DeliveryFigures[];
  /** The 10 fast endpoints again, beside one that answers after `slow_ms`; compare with `endpoints_10`. */
  with_slow_endpoint: DeliveryFigures[];
  slow_ms: number;
}

/** Deliveries per second over several runs of one phase: all they delivered over all the time they took. */
export function pooledRate(runs: readonly DeliveryFigures[]): number {
  return Math.round(sum(runs.map((r) => r.delivered)) / sum(runs.map((r) => r.complete_s)));
}

/** Forks bench/receiver.ts (paths under `/slow/` answer after `slowMs`) and resolves once it listens. */
export async function startReceiver(slowMs: number): Promise<Receiver> {
  const child = fork(join(import.meta.dirname, 'receiver.ts'), [], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, BENCH_SLOW_MS: String(slowMs) },
  });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  type Stats = ReceiverReply & { type: 'stats' };
  const pending = new Map<number, { resolve: (reply: Stats) => void; reject: (error: Error) => void }>();
  let nextId = 0;
  let port = 0;
  // `once` rejects on 'error' (the child could not be started): stop() then has nothing to wait for.
  const exited = once(child, 'exit').catch(() => undefined);
  child.on('message', (message: ReceiverReply) => {
    if (message.type === 'ready') port = message.port;
    else pending.get(message.id)?.resolve(message);
    if (message.type === 'stats') pending.delete(message.id);
  });
  child.on('exit', (code) => {
    for (const { reject } of pending.values()) reject(new Error(`the receiver exited with code ${code}`));
    pending.clear();
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`the receiver exited with code ${code} before listening`)));
  });
  await ready;
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stats(prefix) {
      const id = nextId++;
      const query: StatsQuery = { type: 'stats', id, prefix };
      return new Promise((resolve, reject) => {
        if (!child.connected) return reject(new Error('the receiver is gone'));
        pending.set(id, { resolve, reject });
        child.send(query);
      });
    },
    async stop() {
      process.off('exit', killOnExit);
      await stopChild(child, exited);
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  if (child.connected) child.disconnect(); // it exits when the IPC channel closes
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts a fresh Herald, registers the endpoints (fast ones at `/fast/<name>/e<i>`, slow ones under `/slow/`),
 * publishes `events` events of a type they all match through the batch API and measures, from the first
 * publish request, until the fast endpoints have received every message.
 */
export async function measureDelivery(
  receiver: Receiver,
  options: DeliveryOptions,
): Promise<DeliveryFigures> {
  const herald = await startHerald();
  try {
    const { apiKey } = await setUpHerald(herald);
    const prefix = `/fast/${options.name}/`;
    for (let i = 0; i < options.endpoints; i++) {
      await putEndpoint(herald, `${options.name}-e${i}`, `${receiver.url}${prefix}e${i}`, [EVENT_TYPE]);
    }
    const slowEndpoints = options.slowEndpoints ?? 0;
    for (let i = 0; i < slowEndpoints; i++) {
      const path = `/slow/${options.name}/e${i}`;
      await putEndpoint(herald, `${options.name}-slow${i}`, receiver.url + path, [EVENT_TYPE]);
    }
    const usage = [herald.pid, receiver.pid, process.pid].map((pid) => sampleResources(pid));
    const startedAt = epochMs();
    const publishedAt = await publish(herald.url, apiKey, options.events);
    const expected = options.events * options.endpoints;
    const deadline = startedAt + options.timeoutS * 1000;
    let fast = await receiver.stats(prefix);
    while (delivered(fast.paths, options.events) < expected && epochMs() < deadline) {
      await sleep(POLL_MS);
      fast = await receiver.stats(prefix);
    }
    const endedAt = epochMs();
    const [heraldCpu, receiverCpu, benchCpu] = usage.map((sampler) => sampler.stop().cpu_percent);
    const slow = await receiver.stats(`/slow/${options.name}/`);
    const arrivals = Object.values(fast.paths);
    const count = delivered(fast.paths, options.events);
    const complete = count >= expected;
    const completeS = ((complete ? Math.max(...arrivals.map((p) => p.last_at)) : endedAt) - startedAt) / 1000;
    return {
      endpoints: options.endpoints,
      slow_endpoints: slowEndpoints,
      events: options.events,
      expected,
      delivered: count,
      complete,
      duplicates: sum(arrivals.map((p) => p.requests - p.distinct)),
      publish_s: seconds(publishedAt - startedAt),
      first_delivery_s:
        arrivals.length === 0 ? null : seconds(Math.min(...arrivals.map((p) => p.first_at)) - startedAt),
      complete_s: seconds(completeS * 1000),
      deliveries_per_s: Math.round(count / completeS),
      slow_delivered: sum(Object.values(slow.paths).map((p) => p.distinct)),
      cpu_percent: { herald: heraldCpu!, receiver: receiverCpu!, load_generator: benchCpu! },
    };
  } finally {
    await herald.stop();
  }
}

/** Messages received, counting at most `perPath` on any path (more would be another phase's doing). */
function delivered(paths: Record<string, PathStats>, perPath: number): number {
  return sum(Object.values(paths).map((p) => Math.min(p.distinct, perPath)));
}

/**
 * Publishes `count` events in batches of {@link BATCH_SIZE}, {@link PUBLISH_CONCURRENCY} at a time; resolves
 * with the epoch ms when the last batch was answered. Throws unless every event was accepted.
 */
async function publish(url: string, apiKey: string, count: number): Promise<number> {
  const sizes = Array.from({ length: Math.ceil(count / BATCH_SIZE) }, (_, i) =>
    Math.min(BATCH_SIZE, count - i * BATCH_SIZE),
  );
  let next = 0;
  const sender = async () => {
    while (next < sizes.length) {
      const batch = next++;
      const events = Array.from({ length: sizes[batch]! }, (_, i) => ({
        type: EVENT_TYPE,
        title: 'Delivery benchmark',
        data: { n: batch * BATCH_SIZE + i },
      }));
      const answer = await api<{ accepted: number }>(url, 'POST', '/v1/events/batch', apiKey, { events });
      if (answer.accepted !== events.length) {
        throw new Error(`a batch of ${events.length} events had only ${answer.accepted} accepted`);
      }
    }
  };
  await Promise.all(Array.from({ length: PUBLISH_CONCURRENCY }, sender));
  return epochMs();
}

/**
 * Posts the bytes of a webhook request Herald sent (the receiver's sample; a made-up one of the same shape if
 * none arrived yet) to the receiver from `connections` concurrent loops for `seconds`, each with its own
 * `webhook-id` so the receiver does the same bookkeeping as for Herald.
 */
export async function measureReceiverCapacity(
  receiver: Receiver,
  options: { connections: number; seconds: number },
): Promise<ReceiverCapacity> {
  const { sample } = await receiver.stats('/none');
  const { headers, body } = sample ?? madeUpSample();
  const id = headers['webhook-id'] ?? 'msg_0000000000000000000000000';
  const pool = new Pool(receiver.url, { connections: options.connections });
  let requests = 0;
  let errors = 0;
  const started = performance.now();
  const deadline = started + options.seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      const n = String(requests + errors);
      const webhookId = id.slice(0, Math.max(4, id.length - n.length)) + n;
      try {
        const response = await pool.request({
          method: 'POST',
          path: '/baseline/b0',
          headers: { ...headers, 'webhook-id': webhookId },
          body,
        });
        await response.body.dump();
        if (response.statusCode === 200) requests++;
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: options.connections }, loop));
  } finally {
    await pool.close();
  }
  const elapsedS = (performance.now() - started) / 1000;
  return {
    connections: options.connections,
    duration_s: seconds(elapsedS * 1000),
    requests,
    requests_per_s: Math.round(requests / elapsedS),
    errors,
    body_bytes: Buffer.byteLength(body),
  };
}

function madeUpSample(): SampleRequest {
  const data = { id: 'evt_0000000000000000000000000', type: EVENT_TYPE, title: 'Delivery benchmark' };
  return {
    headers: {
      'content-type': 'application/json',
      'user-agent': 'Herald-Webhooks/1.0',
      'webhook-id': 'msg_0000000000000000000000000',
      'webhook-timestamp': String(Math.floor(Date.now() / 1000)),
      'webhook-signature': `v1,${'A'.repeat(43)}=`,
    },
    body: JSON.stringify({
      type: EVENT_TYPE,
      timestamp: new Date().toISOString(),
      data,
      pad: 'x'.repeat(400),
    }),
  };
}

const sum = (values: number[]) => values.reduce((total, v) => total + v, 0);
const seconds = (ms: number) => Math.round(ms / 10) / 100;
