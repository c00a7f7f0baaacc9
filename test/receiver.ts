import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { waitFor } from './helpers.ts';

/** A request the receiver got. */
export interface ReceivedRequest {
  method: string;
  /** Path and query. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** How to answer one request. */
export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  body?: string;
  /** Answer after this many milliseconds. */
  delayMs?: number;
  /** Do not answer until `release()` (or the receiver closes). */
  hold?: boolean;
}

/**
 * A real HTTP server on 127.0.0.1 for webhook tests: it records every request and answers as told, in order
 * (`reply`), then with the default (200 unless `always` changed it).
 */
export interface Receiver {
  /** `http://127.0.0.1:<port>/hook` (any path is accepted). */
  readonly url: string;
  readonly port: number;
  readonly requests: ReceivedRequest[];
  /** Answers for the next requests, one each, in order. */
  reply(...replies: Reply[]): void;
  /** The answer once the queued ones are used up. */
  always(reply: Reply): void;
  /** Resolves when at least `count` requests have arrived; returns them all. */
  waitForRequests(count: number, timeoutMs?: number): Promise<ReceivedRequest[]>;
  /** Answers every held request (with its reply, or 200). */
  release(): void;
  close(): Promise<void>;
}

/** Starts a receiver, closed when the test ends. */
export async function startReceiver(t: TestContext, defaults: Reply = {}): Promise<Receiver> {
  const requests: ReceivedRequest[] = [];
  const queue: Reply[] = [];
  const held: (() => void)[] = [];
  let fallback = defaults;

  const answer = (res: ServerResponse, reply: Reply) => {
    if (res.destroyed) return;
    res.writeHead(reply.status ?? 200, { 'content-type': 'text/plain', ...reply.headers });
    res.end(reply.body ?? 'ok');
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requests.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      });
      const reply = queue.shift() ?? fallback;
      if (reply.hold) held.push(() => answer(res, reply));
      else if (reply.delayMs !== undefined) setTimeout(() => answer(res, reply), reply.delayMs);
      else answer(res, reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  let closed = false;
  const receiver: Receiver = {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    requests,
    reply: (...replies) => {
      queue.push(...replies);
    },
    always: (reply) => {
      fallback = reply;
    },
    async waitForRequests(count, timeoutMs = 10_000) {
      await waitFor(() => requests.length >= count, timeoutMs);
      return requests;
    },
    release() {
      for (const send of held.splice(0)) send();
    },
    async close() {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  t.after(() => receiver.close());
  return receiver;
}
