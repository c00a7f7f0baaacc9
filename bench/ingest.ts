import autocannon, { type Result } from 'autocannon';
import { USER } from './setup.ts';

/** Throughput of one autocannon run. */
export interface IngestFigures {
  connections: number;
  duration_s: number;
  requests: number;
  requests_per_s: number;
  /** Events durably accepted (a 202, or an accepted item of a batch). */
  events: number;
  events_per_s: number;
  /** Non-2xx answers, socket errors, timeouts and rejected batch items. */
  errors: number;
  status_codes: Record<string, number>;
  latency_ms: { p50: number; p99: number; max: number };
}

export interface LoadOptions {
  connections: number;
  durationS: number;
}

/** One native event with no id, so every request is a new event. */
const BENCH_EVENT = {
  type: 'bench.event',
  title: 'Benchmark',
  recipients: { users: [USER] },
  data: { n: 1 },
};

/** Drives `POST {url}/v1/events` with {@link BENCH_EVENT}: the same load for the baseline and for Herald. */
export async function singleIngest(
  url: string,
  apiKey: string,
  options: LoadOptions,
): Promise<IngestFigures> {
  const result = await autocannon({
    url: `${url}/v1/events`,
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify(BENCH_EVENT),
    connections: options.connections,
    duration: options.durationS,
  });
  return figures(result, options, result['2xx'], 0);
}

/** Drives `POST {url}/v1/events/batch` with `size` events per request; counts the items Herald accepted. */
export async function batchIngest(
  url: string,
  apiKey: string,
  options: LoadOptions & { size: number },
): Promise<IngestFigures> {
  let accepted = 0;
  let rejected = 0;
  const events = Array.from({ length: options.size }, () => BENCH_EVENT);
  const result = await autocannon({
    url: `${url}/v1/events/batch`,
    connections: options.connections,
    duration: options.durationS,
    requests: [
      {
        method: 'POST',
        headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
        onResponse: (status, body) => {
          if (status !== 200) return;
          // The counts lead the body; a regex spares parsing a thousand results per response.
          accepted += Number(/"accepted":(\d+)/.exec(body)?.[1] ?? 0);
          rejected += Number(/"rejected":(\d+)/.exec(body)?.[1] ?? 0);
        },
      },
    ],
  });
  return figures(result, options, accepted, rejected);
}

function figures(result: Result, options: LoadOptions, events: number, rejected: number): IngestFigures {
  const seconds = result.duration || options.durationS;
  const requests = Object.values(result.statusCodeStats).reduce((sum, s) => sum + s.count, 0);
  return {
    connections: options.connections,
    duration_s: seconds,
    requests,
    requests_per_s: Math.round(requests / seconds),
    events,
    events_per_s: Math.round(events / seconds),
    errors: result.non2xx + result.errors + result.timeouts + rejected,
    status_codes: Object.fromEntries(
      Object.entries(result.statusCodeStats).map(([code, s]) => [code, s.count]),
    ),
    latency_ms: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
  };
}
