import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Pool } from 'undici';
import { type HeraldProcess, startHerald } from './processes.ts';
import { sampleResources } from './resources.ts';
import { api, setUpHerald, USER } from './setup.ts';

/*
 * Issue 5 under load, each phase on a fresh Herald: many escalations whose timers are due in the same second
 * (how late the last one fires), and a recipient's response written back to its source (how long from the
 * response to the write-back arriving).
 */

/** Lateness of a set of timers: when each fired (by Herald's clock, in its transaction) after it was due. */
export interface Lateness {
  fired: number;
  /** The first timer to fire: how late it was (the worker woke on time when this is small). */
  first_ms: number;
  p50_ms: number;
  p99_ms: number;
  /** The last timer to fire: how late it was. */
  last_ms: number;
  /** From the first of them firing to the last. */
  spread_ms: number;
}

/** Escalations that all reach their deadline, then their first level, at the same instant. */
export interface BurstFigures {
  escalations: number;
  /** From the first publish request until every event was routed (escalations started). */
  routed_s: number;
  /** The level's `after`: the deadline notices are due at the deadline, the levels this long after it. */
  level_after_s: number;
  /** The overdue notices at the deadline. */
  deadline: Lateness;
  /** The policy's first level. */
  level: Lateness;
  /** CPU of Herald from the deadline to the last level fired, 100 = one core. */
  herald_cpu_percent: number;
}

/** Percentiles of one set of latencies, in ms. */
export interface Percentiles {
  count: number;
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

/** Responses at a steady rate, each written back to the source's callback URL. */
export interface WriteBackFigures {
  offered_per_s: number;
  sent_per_s: number;
  sent: number;
  errors: number;
  /** The POST answered (the response is committed). */
  ack_ms: Percentiles;
  /** The POST sent → the write-back request at the receiver. */
  write_back_ms: Percentiles;
  /** Responses answered 200 whose write-back never arrived within the drain time. */
  missing: number;
}

export interface EscalationResults {
  burst?: BurstFigures;
  write_back?: WriteBackFigures;
}

const BATCH_SIZE = 1000;
const PUBLISH_CONCURRENCY = 2;
const POLL_MS = 25;
const SLOW_POLL_MS = 250;
// The deadline is this far after the first publish: publishing and routing must be done by then.
const DEADLINE_LEAD_MS = 8_000;
// Long enough for the overdue notices due at the deadline to be done: the levels then come due on their own.
const LEVEL_AFTER = '5s';
const AUDIT_PAGE = 500;

/**
 * Publishes `escalations` events through the batch API, each to one of the bench users with the same `due_at`
 * and a policy whose first level fires `LEVEL_AFTER` later (a policy starts at the deadline), then reads every
 * `escalation.overdue` and `escalation.level_fired` audit entry: each records when it fired and when it was due.
 */
export async function measureEscalationBurst(options: {
  escalations: number;
  timeoutS: number;
}): Promise<BurstFigures> {
  const herald = await startHerald();
  try {
    const { apiKey } = await setUpHerald(herald);
    const admin = herald.adminToken;
    await api(herald.url, 'PUT', '/v1/escalation-policies/bench-burst', admin, {
      name: 'Benchmark burst',
      levels: [{ after: LEVEL_AFTER, targets: { recipients: true }, channels: ['inapp'] }],
    });
    const started = performance.now();
    const deadline = Date.now() + DEADLINE_LEAD_MS;
    const events = Array.from({ length: options.escalations }, (_, i) => ({
      type: 'bench.task',
      title: `Task ${i}`,
      recipients: { users: [`u${(i % 5) + 1}`] },
      due_at: new Date(deadline).toISOString(),
      escalation_policy: 'bench-burst',
    }));
    const ids = await publishAll(herald, apiKey, events);
    await until('every event routed', options.timeoutS, POLL_MS, async () => {
      const pending = await api<{ items: unknown[] }>(
        herald.url,
        'GET',
        '/v1/events?status=pending&limit=1',
        admin,
      );
      return pending.items.length === 0;
    });
    const routed_s = (performance.now() - started) / 1000;
    if (Date.now() >= deadline) {
      throw new Error(`routing took ${routed_s.toFixed(1)} s, past the deadline ${DEADLINE_LEAD_MS} ms out`);
    }
    await sleep(deadline - Date.now());
    const usage = sampleResources(herald.pid);
    // Timers due together fire in id order, and event ids grow: the last event's level fires last.
    const last = ids.at(-1)!;
    // Polled slowly: the figures come from the audit log, and each look takes Herald's time.
    await until('the last level fired', options.timeoutS, SLOW_POLL_MS, async () => {
      const event = await api<{ escalation: { steps: { kind: string }[] } | null }>(
        herald.url,
        'GET',
        `/v1/events/${last}`,
        admin,
      );
      return event.escalation?.steps.some((s) => s.kind === 'level') ?? false;
    });
    const { cpu_percent } = usage.stop();
    return {
      escalations: options.escalations,
      routed_s: round(routed_s),
      level_after_s: Number.parseInt(LEVEL_AFTER, 10),
      deadline: lateness(await firings(herald, 'escalation.overdue')),
      level: lateness(await firings(herald, 'escalation.level_fired')),
      herald_cpu_percent: cpu_percent,
    };
  } finally {
    await herald.stop();
  }
}

/** Publishes events in batches through `POST /v1/events/batch`; returns Herald's ids in publishing order. */
async function publishAll(herald: HeraldProcess, apiKey: string, events: unknown[]): Promise<string[]> {
  const batches: unknown[][] = [];
  for (let i = 0; i < events.length; i += BATCH_SIZE) batches.push(events.slice(i, i + BATCH_SIZE));
  const ids: string[][] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < batches.length; i = next++) {
      const answer = await api<{ rejected: number; items: { id: string }[] }>(
        herald.url,
        'POST',
        '/v1/events/batch',
        apiKey,
        { events: batches[i] },
      );
      if (answer.rejected > 0) throw new Error(`${answer.rejected} events of a batch were rejected`);
      ids[i] = answer.items.map((item) => item.id);
    }
  };
  await Promise.all(Array.from({ length: PUBLISH_CONCURRENCY }, worker));
  return ids.flat().sort();
}

/** When each audited timer of `action` fired and was due (ms), from every page of `GET /v1/audit`. */
async function firings(herald: HeraldProcess, action: string): Promise<{ at: number; due_at: number }[]> {
  const out: { at: number; due_at: number }[] = [];
  let cursor: string | null = null;
  do {
    const query: string = `action=${action}&limit=${AUDIT_PAGE}${cursor ? `&cursor=${cursor}` : ''}`;
    const page: { items: { data: { at: number; due_at: number } }[]; next_cursor: string | null } = await api(
      herald.url,
      'GET',
      `/v1/audit?${query}`,
      herald.adminToken,
    );
    for (const { data } of page.items) out.push({ at: data.at, due_at: data.due_at });
    cursor = page.next_cursor;
  } while (cursor !== null);
  return out;
}

function lateness(fired: { at: number; due_at: number }[]): Lateness {
  const late = fired.map((f) => f.at - f.due_at).sort((a, b) => a - b);
  const at = fired.map((f) => f.at);
  return {
    fired: fired.length,
    first_ms: late[0] ?? 0,
    p50_ms: rank(late, 50),
    p99_ms: rank(late, 99),
    last_ms: late.at(-1) ?? 0,
    spread_ms: at.length === 0 ? 0 : Math.max(...at) - Math.min(...at),
  };
}

const WRITE_BACK_WARM_UP_S = 1;
const DRAIN_MS = 10_000;
const REQUEST_TIMEOUT_MS = 10_000;
const TICK_MS = 2;

/**
 * A source with a callback URL on a local receiver publishes actionable events to `USER`; then `USER`
 * approves them at `rate` a second (after a second of warm-up at the same rate, not counted), and each
 * write-back is timed from just before its POST was sent to its arrival at the receiver (by `data.event_id`).
 */
export async function measureWriteBack(options: {
  rate: number;
  seconds: number;
}): Promise<WriteBackFigures> {
  const herald = await startHerald();
  const receiver = await writeBackReceiver();
  try {
    const { userToken } = await setUpHerald(herald);
    const admin = herald.adminToken;
    const source = await api<{ api_key: string }>(herald.url, 'POST', '/v1/sources', admin, {
      id: 'bench-erp',
      name: 'Benchmark ERP',
      callback_url: receiver.url,
    });
    const warmUp = options.rate * WRITE_BACK_WARM_UP_S;
    const total = warmUp + options.rate * options.seconds;
    const events = Array.from({ length: total }, (_, i) => ({
      type: 'bench.approval',
      title: `Approve request ${i}`,
      recipients: { users: [USER] },
      actions: [{ id: 'approve', label: 'Approve' }],
    }));
    await publishAll(herald, source.api_key, events);
    await until('every event routed', 60, POLL_MS, async () => {
      const pending = await api<{ items: unknown[] }>(
        herald.url,
        'GET',
        '/v1/events?status=pending&limit=1',
        admin,
      );
      return pending.items.length === 0;
    });
    const inbox = await notificationsOf(herald, userToken);
    if (inbox.length < total) throw new Error(`${inbox.length} of ${total} notifications in the inbox`);
    const sent: Responses = { sentAt: new Map(), ackMs: [], errors: 0, answered: new Set() };
    const pool = new Pool(herald.url, {
      connections: 32,
      headersTimeout: REQUEST_TIMEOUT_MS,
      bodyTimeout: REQUEST_TIMEOUT_MS,
    });
    try {
      const allArrived = () => [...sent.answered].every((id) => receiver.times.has(id));
      await respondPaced(pool, userToken, inbox.slice(0, warmUp), options.rate, sent);
      await until('the warm-up write-backs', DRAIN_MS / 1000, POLL_MS, async () => allArrived());
      const measured = inbox.slice(warmUp, total);
      const measuredSent: Responses = { sentAt: new Map(), ackMs: [], errors: 0, answered: new Set() };
      const elapsedMs = await respondPaced(pool, userToken, measured, options.rate, measuredSent);
      const deadline = performance.now() + DRAIN_MS;
      const arrived = () => [...measuredSent.answered].every((id) => receiver.times.has(id));
      while (!arrived() && performance.now() < deadline) await sleep(20);
      const latencies = [...measuredSent.answered].flatMap((id) => {
        const at = receiver.times.get(id);
        return at === undefined ? [] : [at - measuredSent.sentAt.get(id)!];
      });
      return {
        offered_per_s: options.rate,
        sent_per_s: Math.round((measured.length / elapsedMs) * 1000),
        sent: measured.length,
        errors: measuredSent.errors,
        ack_ms: percentiles(measuredSent.ackMs),
        write_back_ms: percentiles(latencies),
        missing: measuredSent.answered.size - latencies.length,
      };
    } finally {
      await pool.close();
    }
  } finally {
    await receiver.close();
    await herald.stop();
  }
}

/** Responses sent, by event id. */
interface Responses {
  /** `performance.now()` just before each POST was handed to the client. */
  sentAt: Map<string, number>;
  ackMs: number[];
  errors: number;
  /** Events whose response was answered 200. */
  answered: Set<string>;
}

/** `USER`'s notifications, oldest first, through `GET /v1/me/notifications`. */
async function notificationsOf(
  herald: HeraldProcess,
  token: string,
): Promise<{ id: string; event_id: string }[]> {
  const out: { id: string; event_id: string }[] = [];
  let cursor: string | null = null;
  do {
    const path: string = `/v1/me/notifications?limit=500${cursor ? `&cursor=${cursor}` : ''}`;
    const page: { items: { id: string; event_id: string }[]; next_cursor: string | null } = await api(
      herald.url,
      'GET',
      path,
      token,
    );
    out.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor !== null);
  return out.reverse();
}

/** Approves the notifications on a fixed schedule (open loop); resolves with the sending time in ms. */
async function respondPaced(
  pool: Pool,
  token: string,
  notifications: { id: string; event_id: string }[],
  rate: number,
  sent: Responses,
): Promise<number> {
  const inFlight: Promise<void>[] = [];
  const start = performance.now();
  let next = 0;
  while (next < notifications.length) {
    const due = Math.min(notifications.length, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    while (next < due) inFlight.push(approve(pool, token, notifications[next++]!, sent));
    await sleep(TICK_MS);
  }
  const elapsedMs = performance.now() - start;
  await Promise.all(inFlight);
  return elapsedMs;
}

async function approve(
  pool: Pool,
  token: string,
  notification: { id: string; event_id: string },
  sent: Responses,
): Promise<void> {
  const started = performance.now();
  sent.sentAt.set(notification.event_id, started);
  try {
    const response = await pool.request({
      method: 'POST',
      path: `/v1/me/notifications/${notification.id}/actions/approve`,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: '{}',
    });
    await response.body.dump();
    if (response.statusCode !== 200) {
      sent.errors++;
      return;
    }
    sent.ackMs.push(performance.now() - started);
    sent.answered.add(notification.event_id);
  } catch {
    sent.errors++;
  }
}

/** A callback receiver that answers 204 and records when each event's first write-back arrived. */
async function writeBackReceiver() {
  const times = new Map<string, number>();
  const server = createServer((request, response) => {
    const arrived = performance.now();
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk: string) => {
      body += chunk;
    });
    request.on('end', () => {
      try {
        const eventId = (JSON.parse(body) as { data?: { event_id?: unknown } }).data?.event_id;
        if (typeof eventId === 'string' && !times.has(eventId)) times.set(eventId, arrived);
        response.writeHead(204).end();
      } catch {
        response.writeHead(400).end();
      }
    });
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/callback`,
    times,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Polls `done` until it holds; throws naming `what` after `timeoutS`. */
async function until(
  what: string,
  timeoutS: number,
  pollMs: number,
  done: () => Promise<boolean>,
): Promise<void> {
  const deadline = performance.now() + timeoutS * 1000;
  while (!(await done())) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutS} s`);
    await sleep(pollMs);
  }
}

/** Nearest-rank percentiles, rounded to 0.1 ms. */
function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    count: sorted.length,
    p50: rank(sorted, 50),
    p95: rank(sorted, 95),
    p99: rank(sorted, 99),
    max: round(sorted.at(-1) ?? 0),
  };
}

const rank = (sorted: number[], p: number) =>
  round(sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0);
const round = (n: number) => Math.round(n * 10) / 10;
