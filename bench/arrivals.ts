import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createParser } from 'eventsource-parser';
import { Client } from 'undici';

/** Records when each benchmark event arrived over one channel (`performance.now()` ms, first arrival only). */
export interface Arrivals<K> {
  readonly times: Map<K, number>;
  close(): Promise<void>;
}

/**
 * A webhook receiver on 127.0.0.1 that answers 204 at once and records, per event, when its request arrived.
 * Events are told apart by `data.data.seq`, the sequence number the sender put in the event's data.
 */
export async function webhookReceiver(): Promise<Arrivals<number> & { url: string }> {
  const times = new Map<number, number>();
  const server = createServer((request, response) => {
    const arrived = performance.now();
    readBody(request)
      .then((body) => {
        const seq = (JSON.parse(body) as { data?: { data?: { seq?: unknown } } }).data?.data?.seq;
        if (typeof seq === 'number' && !times.has(seq)) times.set(seq, arrived);
        response.writeHead(204).end();
      })
      .catch(() => response.writeHead(400).end());
  });
  server.keepAliveTimeout = 30_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    times,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/**
 * One SSE connection to `GET /v1/me/stream` with a user token; records when each `notification` frame
 * arrived, by its `event_id`. Resolves once the stream is open (so nothing published afterwards is missed).
 */
export async function inboxStream(url: string, userToken: string): Promise<Arrivals<string>> {
  const times = new Map<string, number>();
  const client = new Client(url, { bodyTimeout: 0 });
  const response = await client.request({
    method: 'GET',
    path: '/v1/me/stream',
    headers: { authorization: `Bearer ${userToken}`, accept: 'text/event-stream' },
  });
  if (response.statusCode !== 200) {
    const text = await response.body.text();
    await client.close();
    throw new Error(`GET /v1/me/stream answered ${response.statusCode}: ${text}`);
  }
  const parser = createParser({
    onEvent: (frame) => {
      if (frame.event !== 'notification') return;
      const arrived = performance.now();
      const eventId = (JSON.parse(frame.data) as { event_id: string }).event_id;
      if (!times.has(eventId)) times.set(eventId, arrived);
    },
  });
  response.body.setEncoding('utf8');
  response.body.on('data', (chunk: string) => parser.feed(chunk));
  response.body.on('error', () => {}); // ended by close() below
  return {
    times,
    async close() {
      response.body.destroy();
      await client.destroy();
    },
  };
}

async function readBody(request: IncomingMessage): Promise<string> {
  let body = '';
  request.setEncoding('utf8');
  for await (const chunk of request) body += chunk;
  return body;
}
