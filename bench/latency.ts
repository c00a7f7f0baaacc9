import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { type Arrivals, inboxStream, webhookReceiver } from './arrivals.ts';
import type { HeraldProcess } from './processes.ts';
import { type BenchCredentials, registerEndpoint, USER } from './setup.ts';

/** Percentiles of one set of latencies, in ms. */
export interface Distribution {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Publish-to-arrival latency at a fixed offered rate. */
export interface LatencyFigures {
  offered_per_s: number;
  /** The rate the sender actually kept. */
  sent_per_s: number;
  sent: number;
  /** Events answered 202. */
  accepted: number;
  errors: number;
  /** Publish → 202. */
  ack_ms: Distribution;
  /** Publish → the notification frame on the user's SSE stream. */
  sse_ms: Distribution;
  /** Publish → the webhook request at the receiver. */
  webhook_ms: Distribution;
  /** Accepted events that never arrived within the drain time, per channel. */
  missing: { sse: number; webhook: number };
}

/** The latency probes' type: matched by the bench endpoint, unlike the throughput phases' `bench.event`. */
const PROBE_TYPE = 'bench.latency';
const WARM_UP_SECONDS = 1;
const DRAIN_MS = 10_000;
const TICK_MS = 2;
/** A probe not answered within this counts as an error (keeps the phase bounded). */
const REQUEST_TIMEOUT_MS = 10_000;

/** What was published, by sequence number (warm-up first, then the measured probes). */
interface Sent {
  /** `performance.now()` just before each request was handed to the client. */
  sentAt: number[];
  /** Publish → 202 in ms; a hole where the request failed. */
  ackMs: number[];
  /** Herald's event id → sequence number, from the 202s. */
  seqOf: Map<string, number>;
  errors: number;
}

/** When each probe arrived on each channel: SSE frames by Herald's event id, webhooks by sequence number. */
interface Channels {
  sse: Map<string, number>;
  webhook: Map<number, number>;
}

/**
 * Publishes `rate` events per second for `seconds` to `USER` and measures, from just before each request is
 * sent, when it arrives on the user's SSE stream and at a webhook endpoint. A second of warm-up at the same
 * rate goes first and is not counted.
 */
export async function measureLatency(
  herald: HeraldProcess,
  credentials: BenchCredentials,
  options: { rate: number; seconds: number },
): Promise<LatencyFigures> {
  const webhooks = await webhookReceiver();
  let stream: Arrivals<string> | undefined;
  try {
    await registerEndpoint(herald, webhooks.url, [PROBE_TYPE]);
    stream = await inboxStream(herald.url, credentials.userToken);
    const channels = { sse: stream.times, webhook: webhooks.times };
    const sent: Sent = { sentAt: [], ackMs: [], seqOf: new Map(), errors: 0 };
    const allArrived = () => channels.sse.size >= sent.seqOf.size && channels.webhook.size >= sent.seqOf.size;
    await sendPaced(herald.url, credentials.apiKey, sent, options.rate, WARM_UP_SECONDS);
    await waitUntil(allArrived, DRAIN_MS);
    const first = sent.sentAt.length;
    sent.errors = 0; // errors are counted for the measured probes only, like latencies
    const elapsedMs = await sendPaced(herald.url, credentials.apiKey, sent, options.rate, options.seconds);
    await waitUntil(allArrived, DRAIN_MS);
    return summarise(sent, first, channels, { offered: options.rate, elapsedMs });
  } finally {
    await stream?.close();
    await webhooks.close();
  }
}

/** The figures of the probes numbered from `first` on. */
function summarise(
  sent: Sent,
  first: number,
  channels: Channels,
  rate: { offered: number; elapsedMs: number },
): LatencyFigures {
  const measured = (seq: number | undefined): seq is number => seq !== undefined && seq >= first;
  const latencies = (arrivals: [number | undefined, number][]) =>
    arrivals.flatMap(([seq, at]) => (measured(seq) ? [at - sent.sentAt[seq]!] : []));
  const sse = latencies([...channels.sse].map(([id, at]) => [sent.seqOf.get(id), at]));
  const webhook = latencies([...channels.webhook]);
  const accepted = [...sent.seqOf.values()].filter(measured).length;
  const count = sent.sentAt.length - first;
  return {
    offered_per_s: rate.offered,
    sent_per_s: Math.round((count / rate.elapsedMs) * 1000),
    sent: count,
    accepted,
    errors: sent.errors,
    ack_ms: distribution(sent.ackMs.slice(first).filter(Number.isFinite)),
    sse_ms: distribution(sse),
    webhook_ms: distribution(webhook),
    missing: { sse: Math.max(0, accepted - sse.length), webhook: Math.max(0, accepted - webhook.length) },
  };
}

/**
 * Issues `rate × seconds` requests on a fixed schedule (open loop: a slow answer does not slow the offered
 * rate), numbering them after those already in `sent`. Resolves with the sending time in ms once all answered.
 */
async function sendPaced(
  url: string,
  apiKey: string,
  sent: Sent,
  rate: number,
  seconds: number,
): Promise<number> {
  const pool = new Pool(url, {
    connections: 32,
    headersTimeout: REQUEST_TIMEOUT_MS,
    bodyTimeout: REQUEST_TIMEOUT_MS,
  });
  const first = sent.sentAt.length;
  const total = first + rate * seconds;
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  try {
    while (sent.sentAt.length < total) {
      const due = Math.min(total, first + Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      while (sent.sentAt.length < due) inFlight.push(publish(pool, apiKey, sent, sent.sentAt.length));
      await sleep(TICK_MS);
    }
    const elapsedMs = performance.now() - start;
    await Promise.all(inFlight);
    return elapsedMs;
  } finally {
    await pool.close();
  }
}

async function publish(pool: Pool, apiKey: string, sent: Sent, seq: number): Promise<void> {
  const probe = {
    type: PROBE_TYPE,
    title: `Latency probe ${seq}`,
    recipients: { users: [USER] },
    data: { seq },
  };
  const body = JSON.stringify(probe);
  sent.sentAt[seq] = performance.now();
  try {
    const response = await pool.request({
      method: 'POST',
      path: '/v1/events',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body,
    });
    const text = await response.body.text();
    if (response.statusCode !== 202) {
      sent.errors++;
      return;
    }
    sent.ackMs[seq] = performance.now() - sent.sentAt[seq]!;
    sent.seqOf.set((JSON.parse(text) as { id: string }).id, seq);
  } catch {
    sent.errors++;
  }
}

/** Nearest-rank percentiles, rounded to 0.1 ms. */
function distribution(values: number[]): Distribution {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => round(sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0);
  return {
    count: sorted.length,
    p50: rank(50),
    p95: rank(95),
    p99: rank(99),
    max: round(sorted.at(-1) ?? 0),
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;

async function waitUntil(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done() && performance.now() < deadline) await sleep(20);
}
