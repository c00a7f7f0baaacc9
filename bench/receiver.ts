import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

/*
 * The webhook receiver of the delivery phases, forked by bench/delivery.ts: a process of its own, so that
 * answering thousands of requests a second neither competes with the load generator's event loop nor hides
 * in its CPU figures. It answers 200 at once (paths under `/slow/` after BENCH_SLOW_MS), counts the distinct
 * `webhook-id`s per path and reports over the IPC channel; it exits when that channel closes.
 */

/** What the receiver saw on one path. */
export interface PathStats {
  /** Distinct `webhook-id`s (a retried message counts once). */
  distinct: number;
  requests: number;
  /** Epoch ms (`performance.timeOrigin + performance.now()`) of the first and the latest new message. */
  first_at: number;
  last_at: number;
}

/** One request as the receiver saw it, to replay the same bytes in the capacity baseline. */
export interface SampleRequest {
  headers: Record<string, string>;
  body: string;
}

/** Messages from the receiver. */
export type ReceiverReply =
  | { type: 'ready'; port: number }
  | { type: 'stats'; id: number; paths: Record<string, PathStats>; sample: SampleRequest | null };

/** Messages to the receiver: the stats of every path that starts with `prefix`. */
export interface StatsQuery {
  type: 'stats';
  id: number;
  prefix: string;
}

const SLOW_MS = Number(process.env['BENCH_SLOW_MS'] ?? 1000);
// The headers a webhook sender sets; the sample keeps these so the baseline sends the same header bytes.
const SAMPLED_HEADERS = [
  'content-type',
  'user-agent',
  'webhook-id',
  'webhook-timestamp',
  'webhook-signature',
];

const seen = new Map<string, { ids: Set<string>; stats: PathStats }>();
let sample: SampleRequest | null = null;
const now = () => performance.timeOrigin + performance.now();

const server = createServer((request, response) => {
  const path = request.url ?? '/';
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => {
    if (sample === null) chunks.push(chunk);
  });
  request.on('end', () => {
    record(path, request.headers['webhook-id'], now());
    if (sample === null && request.headers['webhook-id'] !== undefined) {
      sample = { headers: pick(request.headers), body: Buffer.concat(chunks).toString('utf8') };
    }
    if (path.startsWith('/slow/')) setTimeout(() => response.writeHead(200).end(), SLOW_MS);
    else response.writeHead(200).end();
  });
});

function record(path: string, webhookId: string | string[] | undefined, at: number): void {
  let entry = seen.get(path);
  if (entry === undefined) {
    entry = { ids: new Set(), stats: { distinct: 0, requests: 0, first_at: at, last_at: at } };
    seen.set(path, entry);
  }
  entry.stats.requests++;
  const id = typeof webhookId === 'string' ? webhookId : `request-${entry.stats.requests}`;
  if (entry.ids.has(id)) return;
  entry.ids.add(id);
  entry.stats.distinct++;
  entry.stats.last_at = at;
}

function pick(headers: IncomingHttpHeaders): Record<string, string> {
  const kept: Record<string, string> = {};
  for (const name of SAMPLED_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string') kept[name] = value;
  }
  return kept;
}

const reply = (message: ReceiverReply) => process.send?.(message);

process.on('message', (query: StatsQuery) => {
  const paths: Record<string, PathStats> = {};
  for (const [path, { stats }] of seen) if (path.startsWith(query.prefix)) paths[path] = { ...stats };
  reply({ type: 'stats', id: query.id, paths, sample });
});
process.on('disconnect', () => process.exit(0));

server.keepAliveTimeout = 30_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
reply({ type: 'ready', port: (server.address() as AddressInfo).port });
