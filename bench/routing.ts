import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { buildHerald, type Herald } from '../src/app.ts';
import { loadConfig } from '../src/config.ts';
import { decideBatch } from '../src/routing/decision.ts';
import { listEnabledRules } from '../src/routing/rules.repo.ts';

/*
 * Routing throughput with a realistic rule set: 200 rules (type patterns, severities, conditions, directory
 * segments by role and site, payload fields with their managers, groups; half of them continue) over a
 * directory of 100,000 users. Herald runs in this process with its workers off, on a fresh SQLite file, so
 * ingest and routing are timed apart: events are first stored through `POST /v1/events/batch`, then routed
 * batch by batch with `router.runOnce()`. The target: routing costs less than a quarter of ingest per event.
 * `npm run bench -- routing` runs it alone.
 */

/** What one routing run measured. */
export interface RoutingFigures {
  users: number;
  rules: number;
  events: number;
  /** Creating the directory through `POST /v1/users/bulk`. */
  bulk_s: number;
  /** Storing the events through the batch API, per event. */
  ingest_us_per_event: number;
  /** Routing them (rules, directory, subscriptions, preferences, notifications, deliveries), per event. */
  routing_us_per_event: number;
  /** routing / ingest. */
  routing_to_ingest: number;
  /**
   * The routing decision alone (rules, conditions, directory, subscriptions, preferences; what the explain API
   * runs), per event: routing without writing the notifications, deliveries and audit entries it decides on.
   */
  decision_us_per_event: number;
  decision_to_ingest: number;
  notifications_per_event: number;
  rules_matched_per_event: number;
}

export interface RoutingOptions {
  users: number;
  rules: number;
  events: number;
}

const BULK_SIZE = 10_000;
const PUBLISH_SIZE = 1_000;
const ROLES = ['warehouse', 'finance', 'sales', 'support', 'ops'];
const SITES = 1_000;
const DOMAINS = 50;
const GROUPS = 50;
// As the router claims them.
const ROUTER_BATCH = 500;

const userId = (n: number) => `r${String(n).padStart(6, '0')}`;

/** Builds the directory and rules, stores `events` events, then routes them all; returns the timings. */
export async function measureRouting(options: RoutingOptions): Promise<RoutingFigures> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-bench-routing-'));
  const config = loadConfig({
    HERALD_DATABASE_URL: join(dir, 'herald.db'),
    HERALD_ADMIN_TOKEN: 'bench-admin-token-0123456789',
    HERALD_LOG_LEVEL: 'warn',
  });
  const herald = await buildHerald({ config });
  try {
    const call = caller(herald, 'bench-admin-token-0123456789');
    const bulkStarted = performance.now();
    for (let first = 0; first < options.users; first += BULK_SIZE) {
      const count = Math.min(BULK_SIZE, options.users - first);
      const users = Array.from({ length: count }, (_, i) => {
        const n = first + i;
        return {
          id: userId(n),
          name: `Person ${n}`,
          email: `person${n}@corp.example`,
          manager: n % 10 === 0 ? null : userId(n - (n % 10)),
          roles: [ROLES[n % ROLES.length]!],
          attributes: { site: `s${Math.floor(n / ROLES.length) % SITES}`, cost_centre: n % 97 },
        };
      });
      await call('POST', '/v1/users/bulk', { users });
    }
    const bulk_s = (performance.now() - bulkStarted) / 1000;
    for (let g = 0; g < GROUPS; g++) {
      const members = Array.from({ length: 10 }, (_, i) => userId((g * 1_000 + i * 7) % options.users));
      await call('PUT', `/v1/groups/g${g}`, { name: `Group ${g}`, members });
    }
    for (let k = 0; k < options.rules; k++) await call('PUT', `/v1/rules/rule-${k}`, ruleBody(k));
    const { api_key: key } = (await call('POST', '/v1/sources', { id: 'bench', name: 'Bench' })) as {
      api_key: string;
    };

    const events = Array.from({ length: options.events }, (_, i) => ({
      type: `d${i % DOMAINS}.${i % 3 === 0 ? 'failed' : 'changed'}`,
      severity: i % 7 === 0 ? 'critical' : 'warning',
      title: `Event ${i}`,
      subject: `case-${i}`,
      data: {
        site: `s${(i * 13) % SITES}`,
        owner: userId((i * 31) % options.users),
        amount: (i * 37) % 1000,
      },
    }));
    const ingestStarted = performance.now();
    for (let i = 0; i < events.length; i += PUBLISH_SIZE) {
      await call('POST', '/v1/events/batch', { events: events.slice(i, i + PUBLISH_SIZE) }, key);
    }
    const ingestMs = performance.now() - ingestStarted;

    const routingStarted = performance.now();
    while ((await herald.workers.router.runOnce()) > 0);
    const routingMs = performance.now() - routingStarted;
    const decisionMs = await timeDecisions(herald);

    const db = herald.deps.store.db;
    const notifications = await db
      .selectFrom('notifications')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .executeTakeFirstOrThrow();
    const routed = await db
      .selectFrom('audit_log')
      .select('data')
      .where('action', '=', 'event.routed')
      .execute();
    const matched = routed.reduce(
      (sum, r) => sum + (JSON.parse(r.data!) as { rules_matched: string[] }).rules_matched.length,
      0,
    );
    const ingest = (ingestMs * 1000) / options.events;
    const routing = (routingMs * 1000) / options.events;
    const decision = (decisionMs * 1000) / options.events;
    return {
      users: options.users,
      rules: options.rules,
      events: options.events,
      bulk_s: round(bulk_s),
      ingest_us_per_event: Math.round(ingest),
      routing_us_per_event: Math.round(routing),
      routing_to_ingest: round(routing / ingest),
      decision_us_per_event: Math.round(decision),
      decision_to_ingest: round(decision / ingest),
      notifications_per_event: round(Number(notifications.n) / options.events),
      rules_matched_per_event: round(matched / options.events),
    };
  } finally {
    await herald.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Decides the routed events again, batch by batch as the router does, writing nothing; returns the ms taken. */
async function timeDecisions(herald: Herald): Promise<number> {
  const db = herald.deps.store.db;
  const rules = await listEnabledRules(db);
  let total = 0;
  let after = '';
  for (;;) {
    const events = await db
      .selectFrom('events')
      .selectAll()
      .where('id', '>', after)
      .orderBy('id')
      .limit(ROUTER_BATCH)
      .execute();
    if (events.length === 0) return total;
    const started = performance.now();
    await decideBatch(db, events, rules);
    total += performance.now() - started;
    after = events.at(-1)!.id;
  }
}

/** Rule `k`: four per event domain, in four kinds; every other rule continues. */
function ruleBody(k: number) {
  const domain = k % DOMAINS;
  const kind = Math.floor(k / DOMAINS) % 4;
  const base = { position: k, continue: k % 2 === 0, channels: ['inapp', 'email'] };
  switch (kind) {
    case 0:
      return {
        ...base,
        match: { types: [`d${domain}.failed`] },
        recipients: { segments: [{ roles: [ROLES[k % ROLES.length]!], attributes: { site: 'data.site' } }] },
        channels_by_severity: { critical: ['inapp', 'sms'] },
      };
    case 1:
      return {
        ...base,
        match: { types: [`d${domain}.*`], condition: 'data.amount > 500' },
        recipients: { from_data: ['data.owner'], managers_of: ['data.owner'] },
      };
    case 2:
      return {
        ...base,
        match: { types: [`d${domain}.*`], severities: ['critical'] },
        recipients: { groups: [`g${k % GROUPS}`] },
      };
    default:
      return {
        ...base,
        match: { types: [`d${domain}.changed`], subjects: ['case-1*'] },
        recipients: { from_data: ['data.owner'] },
      };
  }
}

function caller(herald: Herald, adminToken: string) {
  return async (method: string, url: string, body: unknown, token = adminToken): Promise<unknown> => {
    const response = await herald.app.inject({
      method: method as 'POST',
      url,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
    if (response.statusCode >= 300)
      throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
    return response.json();
  };
}

const round = (n: number) => Math.round(n * 100) / 100;
