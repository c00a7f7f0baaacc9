import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AnnouncementFigures } from './announcement.ts';
import { type DeliveryFigures, type DeliveryResults, pooledRate } from './delivery.ts';
import type { EscalationResults, Lateness } from './escalation.ts';
import type { IngestFigures } from './ingest.ts';
import type { Distribution, LatencyFigures } from './latency.ts';
import type { ResourceFigures } from './resources.ts';
import type { RoutingFigures } from './routing.ts';

/** Everything one run measured; written as JSON. */
export interface BenchResults {
  started_at: string;
  finished_at?: string;
  machine: {
    cpus: number;
    cpu_model: string;
    memory_mib: number;
    node: string;
    platform: string;
    load_average_at_start: number;
  };
  settings: Record<string, number>;
  notes: string[];
  baseline?: IngestFigures & {
    peak_rss_mib: number;
    /** CPU of the baseline server while it was measured. */
    cpu_percent: number;
  };
  single?: IngestFigures;
  batch?: IngestFigures;
  latency?: LatencyFigures;
  /** Webhook delivery throughput, on fresh Herald processes of its own. */
  delivery?: DeliveryResults;
  /** An announcement to everyone in a large directory, on a fresh Herald. */
  announcement?: AnnouncementFigures;
  /** Routing stored events with many rules over a large directory, timed apart from their ingest. */
  routing?: RoutingFigures;
  /** Escalation timers due together and response write-backs, on fresh Herald processes. */
  escalation?: EscalationResults;
  /** Memory and CPU of Herald, and CPU of the benchmark process, per phase. */
  herald?: ResourceFigures;
  load_generator?: ResourceFigures;
  /** Phases that could not run, with the reason. */
  failures: Record<string, string>;
}

/** Targets a run passes or fails against. */
export const TARGETS = {
  singleRatio: 0.5,
  batchEventsPerS: 50_000,
  p99Ms: 100,
  deliveriesPerS: 5_000,
  /** The fast endpoints' throughput beside a slow one, over their throughput alone. */
  slowEndpointRatio: 0.9,
  /** Seconds from posting an announcement to everyone until every notification is in its inbox. */
  announcementS: 10,
  /** Routing time per event over ingest time per event, with 200 rules and 100,000 users. */
  routingToIngest: 0.25,
  /** How late the last of 10,000 escalation levels due in the same second may fire. */
  escalationLastLateMs: 2_000,
  /** From posting a response to its write-back arriving at the source's callback. */
  writeBackP99Ms: 100,
};

type Row = [figure: string, value: string, reference: string, verdict: string];

/** The results as plain text: the figures, CPU per phase, then notes and failures. */
export function formatTable(results: BenchResults): string {
  const figures = table([
    ['figure', 'value', 'baseline / target', 'result'],
    ...ingestRows(results),
    ...latencyRows(results),
    ...deliveryRows(results),
    ...announcementRows(results),
    ...routingRows(results),
    ...escalationRows(results),
    ...memoryRows(results),
  ]);
  const notes = results.notes.map((note) => `note: ${note}`);
  const failures = Object.entries(results.failures).map(([phase, reason]) => `FAILED ${phase}: ${reason}`);
  // The per-phase CPU table covers the ingest group; without it, it would be empty.
  const cpu = [
    ...(results.load_generator ? ['', table(cpuRows(results))] : []),
    ...(results.delivery ? ['', table(deliveryCpuRows(results.delivery))] : []),
  ];
  return [figures, ...cpu, '', ...notes, ...failures].join('\n');
}

/** Left-aligned columns under a header row and a rule. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]?.length ?? 0)));
  const line = (row: string[]) =>
    row
      .map((cell, i) => cell.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

/** Writes the results to `<dir>/<timestamp>.json` and `<dir>/latest.json`; returns the first path. */
export async function writeResults(results: BenchResults, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const path = join(dir, `${results.started_at.replace(/[:.]/g, '-')}.json`);
  await writeFile(path, json);
  await writeFile(join(dir, 'latest.json'), json);
  return path;
}

function ingestRows({ baseline, single, batch }: BenchResults): Row[] {
  const rows: Row[] = [];
  if (baseline) rows.push(['baseline: no-op Fastify', `${count(baseline.requests_per_s)} req/s`, '', '']);
  if (single) {
    const ratio = baseline ? single.events_per_s / baseline.requests_per_s : Number.NaN;
    rows.push([
      'single-event ingest',
      `${count(single.events_per_s)} events/s`,
      `>= ${TARGETS.singleRatio} x baseline`,
      Number.isNaN(ratio) ? 'no baseline' : `${ratio.toFixed(2)} ${verdict(ratio >= TARGETS.singleRatio)}`,
    ]);
    rows.push(['single-event errors', count(single.errors), '0', verdict(single.errors === 0)]);
  }
  if (batch) {
    rows.push([
      'batch ingest',
      `${count(batch.events_per_s)} events/s`,
      `>= ${count(TARGETS.batchEventsPerS)}`,
      verdict(batch.events_per_s >= TARGETS.batchEventsPerS),
    ]);
    rows.push(['batch errors', count(batch.errors), '0', verdict(batch.errors === 0)]);
  }
  return rows;
}

function latencyRows({ latency }: BenchResults): Row[] {
  if (!latency) return [];
  const row = (name: string, d: Distribution, missing: number): Row => [
    `${name} latency (p50/p95/p99/max)`,
    `${d.p50} / ${d.p95} / ${d.p99} / ${d.max} ms`,
    `p99 < ${TARGETS.p99Ms} ms`,
    missing > 0 ? `FAIL (${missing} missing)` : verdict(d.count > 0 && d.p99 < TARGETS.p99Ms),
  ];
  return [
    [
      `offered rate`,
      `${latency.sent_per_s} events/s`,
      `${latency.offered_per_s}`,
      `${latency.errors} errors`,
    ],
    [`publish -> 202 (p50/p99)`, `${latency.ack_ms.p50} / ${latency.ack_ms.p99} ms`, '', ''],
    row('publish -> SSE', latency.sse_ms, latency.missing.sse),
    row('publish -> webhook', latency.webhook_ms, latency.missing.webhook),
  ];
}

function deliveryRows({ delivery }: BenchResults): Row[] {
  if (!delivery) return [];
  const capacity = delivery.receiver_capacity;
  const rows: Row[] = [];
  if (capacity) {
    rows.push([
      `receiver capacity (undici, ${capacity.connections} connections)`,
      `${count(capacity.requests_per_s)} req/s`,
      '',
      capacity.errors > 0 ? `${count(capacity.errors)} errors` : '',
    ]);
  }
  const phases: [string, DeliveryFigures[]][] = [
    ['1 endpoint', delivery.endpoints_1 ? [delivery.endpoints_1] : []],
    ['10 endpoints', delivery.endpoints_10],
    ['100 endpoints', delivery.endpoints_100 ? [delivery.endpoints_100] : []],
  ];
  for (const [name, runs] of phases) {
    if (runs.length === 0) continue;
    const rate = pooledRate(runs);
    const ratio = capacity ? ` (${(rate / capacity.requests_per_s).toFixed(2)} x receiver)` : '';
    rows.push([
      `webhook delivery, ${name}${runsNote(runs)}`,
      `${count(rate)} deliveries/s`,
      `>= ${count(TARGETS.deliveriesPerS)}`,
      `${completion(runs, rate >= TARGETS.deliveriesPerS)}${ratio}`,
    ]);
    rows.push(...runs.map(timingRow));
  }
  const slow = delivery.with_slow_endpoint;
  if (slow.length > 0) {
    const alone = delivery.endpoints_10;
    const ratio = alone.length > 0 ? pooledRate(slow) / pooledRate(alone) : Number.NaN;
    rows.push([
      `10 endpoints beside 1 slow (${delivery.slow_ms / 1000} s)${runsNote(slow)}`,
      `${count(pooledRate(slow))} deliveries/s`,
      `>= ${TARGETS.slowEndpointRatio} x 10 endpoints alone`,
      Number.isNaN(ratio)
        ? 'no 10-endpoint figure'
        : `${ratio.toFixed(2)} ${completion(slow, ratio >= TARGETS.slowEndpointRatio)}`,
    ]);
    rows.push(...slow.map(timingRow));
    const slowDelivered = slow.reduce((total, run) => total + run.slow_delivered, 0);
    rows.push(['  the slow endpoint meanwhile', `${count(slowDelivered)} deliveries`, '', '']);
  }
  return rows;
}

/** Names how many runs a delivery figure pools, when more than one. */
const runsNote = (runs: readonly DeliveryFigures[]) => (runs.length > 1 ? `, ${runs.length} runs` : '');

/** Publish time, first delivery and completion of one delivery phase, all from the first publish request. */
function timingRow(figures: DeliveryFigures): Row {
  const first = figures.first_delivery_s === null ? '-' : figures.first_delivery_s.toFixed(2);
  return [
    '  published / first / all delivered',
    `${figures.publish_s.toFixed(2)} / ${first} / ${figures.complete_s.toFixed(2)} s`,
    `${count(figures.events)} events, ${count(figures.expected)} deliveries`,
    figures.duplicates > 0 ? `${count(figures.duplicates)} retried` : '',
  ];
}

/** The verdict, or FAIL with the count of deliveries that did not arrive in time. */
function completion(runs: readonly DeliveryFigures[], pass: boolean): string {
  const missing = runs.reduce((total, run) => total + run.expected - run.delivered, 0);
  return missing === 0 ? verdict(pass) : `FAIL (${count(missing)} missing)`;
}

function announcementRows({ announcement: a }: BenchResults): Row[] {
  if (!a) return [];
  const pass = a.publish_s < TARGETS.announcementS && a.notifications === a.users && a.inbox_ok;
  return [
    [
      `announcement to ${count(a.users)} users`,
      `${a.publish_s.toFixed(2)} s`,
      `< ${TARGETS.announcementS} s`,
      verdict(pass),
    ],
    [
      '  notifications / progress steps seen',
      `${count(a.notifications)} / ${a.progress_steps}`,
      `${count(a.notifications_per_s)} notifications/s`,
      a.inbox_ok ? 'in the sampled inbox' : 'FAIL (not in the sampled inbox)',
    ],
  ];
}

function routingRows({ routing: r }: BenchResults): Row[] {
  if (!r) return [];
  const target = `< ${TARGETS.routingToIngest} x ingest time per event`;
  const ratio = (value: number) => `${value.toFixed(2)} ${verdict(value < TARGETS.routingToIngest)}`;
  return [
    [
      `routing, ${count(r.rules)} rules, ${count(r.users)} users`,
      `${count(r.routing_us_per_event)} µs/event`,
      target,
      ratio(r.routing_to_ingest),
    ],
    [
      '  routing decision alone (no writes)',
      `${count(r.decision_us_per_event)} µs/event`,
      target,
      ratio(r.decision_to_ingest),
    ],
    [
      '  ingest (batch API, in process)',
      `${count(r.ingest_us_per_event)} µs/event`,
      `${count(r.events)} events`,
      `${r.notifications_per_event} notifications, ${r.rules_matched_per_event} rules matched per event`,
    ],
  ];
}

function escalationRows({ escalation }: BenchResults): Row[] {
  const rows: Row[] = [];
  const burst = escalation?.burst;
  if (burst) {
    const pass = (l: Lateness) => l.fired === burst.escalations && l.last_ms < TARGETS.escalationLastLateMs;
    const late = (what: string, l: Lateness): Row => [
      `  ${what}: late first / p50 / p99 / last`,
      `${count(l.first_ms)} / ${count(l.p50_ms)} / ${count(l.p99_ms)} / ${count(l.last_ms)} ms`,
      `last < ${count(TARGETS.escalationLastLateMs)} ms`,
      l.fired === burst.escalations
        ? verdict(pass(l))
        : `FAIL (${count(l.fired)} of ${count(burst.escalations)} fired)`,
    ];
    rows.push(
      [
        `${count(burst.escalations)} escalations due together`,
        `last level ${count(burst.level.last_ms)} ms late`,
        `< ${count(TARGETS.escalationLastLateMs)} ms`,
        verdict(pass(burst.level)),
      ],
      late('overdue notices at the deadline', burst.deadline),
      late(`first level (${burst.level_after_s} s later)`, burst.level),
      [
        '  routed / Herald CPU while firing',
        `${burst.routed_s.toFixed(2)} s / ${burst.herald_cpu_percent}%`,
        'from the first publish',
        '',
      ],
    );
  }
  const wb = escalation?.write_back;
  if (wb) {
    const d = wb.write_back_ms;
    rows.push(
      [
        'response -> write-back (p50/p95/p99/max)',
        `${d.p50} / ${d.p95} / ${d.p99} / ${d.max} ms`,
        `p99 < ${TARGETS.writeBackP99Ms} ms`,
        wb.missing > 0 || wb.errors > 0
          ? `FAIL (${wb.missing} missing, ${wb.errors} errors)`
          : verdict(d.count > 0 && d.p99 < TARGETS.writeBackP99Ms),
      ],
      [
        '  response POST -> 200 (p50/p99)',
        `${wb.ack_ms.p50} / ${wb.ack_ms.p99} ms`,
        `${wb.sent_per_s} of ${wb.offered_per_s} responses/s`,
        `${count(wb.sent)} responses`,
      ],
    );
  }
  return rows;
}

function memoryRows({ herald, baseline }: BenchResults): Row[] {
  if (!herald) return [];
  const reference = baseline ? `${baseline.peak_rss_mib} MiB (baseline)` : '';
  const ratio = baseline ? `x${(herald.peak_rss_mib / baseline.peak_rss_mib).toFixed(1)}` : '';
  return [['peak RSS (Herald)', `${herald.peak_rss_mib} MiB`, reference, ratio]];
}

/** CPU of each process in each phase: shows what the load generator takes from the shared cores. */
function cpuRows({ herald, load_generator, baseline }: BenchResults): string[][] {
  const phases = Object.keys(load_generator?.by_phase ?? {}).filter((name) => name !== 'start-up');
  const percent = (value: number | undefined) => (value === undefined ? '-' : `${value}%`);
  const row = (name: string, figures: ResourceFigures | undefined) => [
    name,
    ...phases.map((phase) => percent(figures?.by_phase[phase]?.cpu_percent)),
  ];
  return [
    ['CPU (100% = one core)', ...phases],
    row('Herald', herald),
    row('bench process (load generator)', load_generator),
    [
      'baseline server',
      ...phases.map((phase) => percent(phase === 'baseline' ? baseline?.cpu_percent : undefined)),
    ],
  ];
}

/** CPU of Herald, the receiver and the benchmark process while each delivery phase ran. */
function deliveryCpuRows(delivery: DeliveryResults): string[][] {
  const numbered = (name: string, runs: DeliveryFigures[]) =>
    runs.map((run, i): [string, DeliveryFigures] => [runs.length > 1 ? `${name} #${i + 1}` : name, run]);
  const phases: [string, DeliveryFigures | undefined][] = [
    ['1 endpoint', delivery.endpoints_1],
    ['100 endpoints', delivery.endpoints_100],
    ...numbered('10 endpoints', delivery.endpoints_10),
    ...numbered('10 + 1 slow', delivery.with_slow_endpoint),
  ];
  const measured = phases.filter((entry): entry is [string, DeliveryFigures] => entry[1] !== undefined);
  const row = (name: string, process: keyof DeliveryFigures['cpu_percent']) => [
    name,
    ...measured.map(([, figures]) => `${figures.cpu_percent[process]}%`),
  ];
  return [
    ['CPU during delivery', ...measured.map(([name]) => name)],
    row('Herald', 'herald'),
    row('webhook receiver', 'receiver'),
    row('bench process (publisher)', 'load_generator'),
  ];
}

const verdict = (pass: boolean) => (pass ? 'pass' : 'FAIL');
const count = (n: number) => n.toLocaleString('en-US');
