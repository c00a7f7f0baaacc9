import { availableParallelism, cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { measureAnnouncement } from './announcement.ts';
import { type DeliveryResults, measureDelivery, measureReceiverCapacity, startReceiver } from './delivery.ts';
import { type EscalationResults, measureEscalationBurst, measureWriteBack } from './escalation.ts';
import { batchIngest, singleIngest } from './ingest.ts';
import { measureLatency } from './latency.ts';
import { type HeraldProcess, startBaseline, startHerald } from './processes.ts';
import { type BenchResults, formatTable, writeResults } from './report.ts';
import { sampleResources } from './resources.ts';
import { measureRouting } from './routing.ts';
import { type BenchCredentials, setUpHerald } from './setup.ts';

/*
 * `npm run bench`: Herald's ingest throughput, publish-to-arrival latency, webhook delivery throughput, an
 * announcement to a large directory, the cost of routing beside ingest, memory and CPU, each beside a baseline
 * or target measured in the same run, so the comparison holds on a slow or noisy machine.
 */

const SETTINGS = {
  connections: 50,
  duration_s: 8,
  batch_size: 1000,
  batch_connections: 4,
  batch_duration_s: 5,
  latency_rate_per_s: 500,
  latency_seconds: 10,
  delivery_events_1_endpoint: 20_000,
  delivery_events_10_endpoints: 2_000,
  delivery_events_100_endpoints: 300,
  delivery_timeout_s: 30,
  slow_endpoint_ms: 1_000,
  slow_endpoint_pairs: 2,
  receiver_connections: 16,
  receiver_duration_s: 3,
  announcement_users: 100_000,
  announcement_timeout_s: 60,
  routing_users: 100_000,
  routing_rules: 200,
  routing_events: 10_000,
  escalation_burst: 10_000,
  escalation_timeout_s: 60,
  write_back_rate_per_s: 200,
  write_back_seconds: 5,
};

const RESULTS_DIR = join(import.meta.dirname, 'results');
const out = (text: string) => process.stdout.write(`${text}\n`);

/**
 * `npm run bench -- ingest` (or `delivery`, `announcement`, `routing`, `escalation`) runs one group of phases;
 * several can be named; no argument runs them all.
 */
const GROUPS = ['ingest', 'delivery', 'announcement', 'routing', 'escalation'] as const;

async function main(): Promise<void> {
  const chosen = process.argv.slice(2);
  const unknown = chosen.filter((g) => !(GROUPS as readonly string[]).includes(g));
  if (unknown.length > 0)
    throw new Error(`unknown phase group ${unknown.join(', ')}; choose from ${GROUPS.join(', ')}`);
  const runs = (group: (typeof GROUPS)[number]) => chosen.length === 0 || chosen.includes(group);
  const results = newResults();
  out(`Herald benchmark on ${results.machine.cpus} CPUs, Node ${results.machine.node}\n`);
  if (runs('ingest')) {
    const herald = await phase(results, 'herald start-up', startHerald);
    try {
      await runPhases(results, herald);
    } finally {
      if (herald) await phase(results, 'herald shut-down', () => herald.stop());
    }
  }
  // After the shut-down: the routing backlog the ingest phases leave would take the CPU from these.
  if (runs('delivery')) await runDeliveryPhases(results);
  if (runs('announcement')) {
    const options = { users: SETTINGS.announcement_users, timeoutS: SETTINGS.announcement_timeout_s };
    results.announcement = await phase(results, 'announcement to everyone', () =>
      measureAnnouncement(options),
    );
  }
  if (runs('escalation')) await runEscalationPhases(results);
  // Herald runs inside this process here (workers off), so it comes after every child has stopped.
  if (runs('routing')) {
    const options = {
      users: SETTINGS.routing_users,
      rules: SETTINGS.routing_rules,
      events: SETTINGS.routing_events,
    };
    results.routing = await phase(results, 'routing with rules and a directory', () =>
      measureRouting(options),
    );
  }
  results.finished_at = new Date().toISOString();
  out(`\n${formatTable(results)}`);
  out(`\nresults: ${await writeResults(results, RESULTS_DIR)}`);
  if (Object.keys(results.failures).length > 0) process.exitCode = 1;
}

/**
 * The phases in order. The latency probe goes first, on an idle Herald, before the throughput phases leave a
 * routing backlog behind them; the baseline runs right before Herald's single-event phase, so that both see
 * the machine in the same state.
 */
async function runPhases(results: BenchResults, herald: HeraldProcess | undefined): Promise<void> {
  // What each phase costs Herald and the benchmark process itself (the load generator shares the cores).
  const heraldUsage = herald && sampleResources(herald.pid);
  const benchUsage = sampleResources(process.pid);
  const measure = (name: string, run: () => Promise<void>) => {
    heraldUsage?.phase(name);
    benchUsage.phase(name);
    return phase(results, name, run);
  };
  try {
    const credentials = herald && (await phase(results, 'set-up', () => setUpHerald(herald)));
    const ready = herald && credentials && { herald, credentials };
    if (ready) await measure('latency', () => runLatency(results, ready));
    await measure('baseline', () => runBaseline(results));
    if (ready) await measure('single-event ingest', () => runSingle(results, ready));
    if (ready) await measure('batch ingest', () => runBatch(results, ready));
  } finally {
    results.herald = heraldUsage?.stop();
    results.load_generator = benchUsage.stop();
  }
}

interface Ready {
  herald: HeraldProcess;
  credentials: BenchCredentials;
}

async function runLatency(results: BenchResults, { herald, credentials }: Ready): Promise<void> {
  const options = { rate: SETTINGS.latency_rate_per_s, seconds: SETTINGS.latency_seconds };
  results.latency = await measureLatency(herald, credentials, options);
}

async function runBaseline(results: BenchResults): Promise<void> {
  const server = await startBaseline();
  try {
    const usage = sampleResources(server.pid);
    const load = { connections: SETTINGS.connections, durationS: SETTINGS.duration_s };
    // The baseline ignores the Authorization header; it is sent so both runs send the same bytes.
    const figures = await singleIngest(server.url, 'baseline-does-not-check-this-key', load);
    const { peak_rss_mib, cpu_percent } = usage.stop();
    results.baseline = { ...figures, peak_rss_mib, cpu_percent };
  } finally {
    await server.stop();
  }
}

async function runSingle(results: BenchResults, { herald, credentials }: Ready): Promise<void> {
  const load = { connections: SETTINGS.connections, durationS: SETTINGS.duration_s };
  results.single = await singleIngest(herald.url, credentials.apiKey, load);
}

async function runBatch(results: BenchResults, { herald, credentials }: Ready): Promise<void> {
  const load = { connections: SETTINGS.batch_connections, durationS: SETTINGS.batch_duration_s };
  results.batch = await batchIngest(herald.url, credentials.apiKey, { ...load, size: SETTINGS.batch_size });
}

/**
 * Webhook delivery throughput, each phase on a fresh Herald of its own (see delivery.ts). The receiver's
 * capacity is measured right after the first phase, with the bytes Herald sent in it. The 10-endpoint phase
 * and the same with a slow endpoint added run in turns, twice, so that both see the machine in the same
 * states and one noisy run does not decide the ratio.
 */
async function runDeliveryPhases(results: BenchResults): Promise<void> {
  const receiver = await phase(results, 'webhook receiver start-up', () =>
    startReceiver(SETTINGS.slow_endpoint_ms),
  );
  if (!receiver) return;
  const delivery: DeliveryResults = {
    slow_ms: SETTINGS.slow_endpoint_ms,
    endpoints_10: [],
    with_slow_endpoint: [],
  };
  results.delivery = delivery;
  const deliver = (name: string, endpoints: number, events: number, slowEndpoints = 0) => {
    const label = `delivery: ${endpoints} endpoint${endpoints === 1 ? '' : 's'}${slowEndpoints ? ' + 1 slow' : ''}`;
    const options = { name, endpoints, events, slowEndpoints, timeoutS: SETTINGS.delivery_timeout_s };
    return phase(results, label, () => measureDelivery(receiver, options));
  };
  const capacity = { connections: SETTINGS.receiver_connections, seconds: SETTINGS.receiver_duration_s };
  try {
    delivery.endpoints_1 = await deliver('n1', 1, SETTINGS.delivery_events_1_endpoint);
    delivery.receiver_capacity = await phase(results, 'delivery: receiver capacity', () =>
      measureReceiverCapacity(receiver, capacity),
    );
    delivery.endpoints_100 = await deliver('n100', 100, SETTINGS.delivery_events_100_endpoints);
    for (let pair = 1; pair <= SETTINGS.slow_endpoint_pairs; pair++) {
      const alone = await deliver(`n10-${pair}`, 10, SETTINGS.delivery_events_10_endpoints);
      if (alone) delivery.endpoints_10.push(alone);
      const beside = await deliver(`slow-${pair}`, 10, SETTINGS.delivery_events_10_endpoints, 1);
      if (beside) delivery.with_slow_endpoint.push(beside);
    }
  } finally {
    await receiver.stop();
  }
}

/** Escalation timers due together, then responses written back; each on a fresh Herald (see escalation.ts). */
async function runEscalationPhases(results: BenchResults): Promise<void> {
  const escalation: EscalationResults = {};
  results.escalation = escalation;
  const burst = { escalations: SETTINGS.escalation_burst, timeoutS: SETTINGS.escalation_timeout_s };
  escalation.burst = await phase(results, 'escalation: timers due in the same second', () =>
    measureEscalationBurst(burst),
  );
  const pace = { rate: SETTINGS.write_back_rate_per_s, seconds: SETTINGS.write_back_seconds };
  escalation.write_back = await phase(results, 'escalation: response -> write-back', () =>
    measureWriteBack(pace),
  );
}

/** Runs one phase; a failure is recorded in the results (and the run goes on) rather than thrown. */
async function phase<T>(
  results: BenchResults,
  name: string,
  run: (r: BenchResults) => Promise<T>,
): Promise<T | undefined> {
  const started = performance.now();
  out(`- ${name} ...`);
  try {
    const value = await run(results);
    out(`  done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return value;
  } catch (error) {
    results.failures[name] = (error as Error).message ?? String(error);
    out(`  failed: ${results.failures[name]}`);
    return undefined;
  }
}

function newResults(): BenchResults {
  const cpuCount = availableParallelism();
  const notes = [
    'autocannon, the latency sender and the receivers run in the benchmark process on the same machine as the ' +
      'server under test; the baseline is measured the same way, so the ratio compares like with like.',
    'the delivery phases run a fresh Herald each and a webhook receiver in a child process of its own; all ' +
      'endpoints are paths on that one receiver, so Herald reaches them over one connection pool.',
  ];
  if (cpuCount <= 2) {
    notes.push(
      `only ${cpuCount} CPU cores: the load generator and Herald share them, which lowers both figures.`,
    );
  }
  const [load = 0] = loadavg();
  if (load >= 0.5) {
    notes.push(
      `the machine was already busy (load average ${load.toFixed(2)}) when the run started: expect noise.`,
    );
  }
  return {
    started_at: new Date().toISOString(),
    machine: {
      cpus: cpuCount,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_mib: Math.round(totalmem() / 2 ** 20),
      node: process.version,
      platform: `${process.platform} ${process.arch}`,
      load_average_at_start: Number(load.toFixed(2)),
    },
    settings: SETTINGS,
    notes,
    failures: {},
  };
}

// Ctrl-C still stops the children (processes.ts kills them on exit).
process.on('SIGINT', () => process.exit(130));
await main();
