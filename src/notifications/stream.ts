import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Context } from '../context.ts';
import type { Deps } from '../deps.ts';
import { HeraldError, invalid } from '../errors.ts';
import { presentNotification } from './notifications.present.ts';
import { changesSince, latestSeq } from './notifications.repo.ts';

/*
 * The real-time inbox: Server-Sent Events (WHATWG HTML, "Server-sent events"). Each frame's `id` is the
 * notification's stream position (`seq`), which grows with every change a user's inbox sees, in commit order.
 * A stream only ever asks the database for "my user's changes after the last position I sent", so wake-ups
 * may come late, twice or out of order without losing or repeating a frame. Shared queue changes are sent
 * as `queue.updated` frames without an `id` (so Last-Event-ID keeps naming the last notification): they are
 * live only, and a client refetches its queues when it reconnects.
 */

/** Milliseconds a browser waits before reconnecting (the `retry` field). */
const RETRY_MS = 2_000;
const HEARTBEAT_MS = 15_000;
/** A stream also looks for changes this often, in case a wake-up was lost (e.g. LISTEN reconnecting). */
const POLL_MS = 5_000;
const BATCH = 200;

export interface StreamOptions {
  /** Whether the credentials the stream was opened with are still good (checked on each poll). */
  authorised: () => Promise<boolean>;
  /** Called once when the stream has ended, however it ended. */
  onClose: (stream: InboxStream) => void;
}

/** One open SSE connection of one user. */
export class InboxStream {
  readonly userId: string;
  readonly #ctx: Context;
  readonly #res: ServerResponse;
  readonly #options: StreamOptions;
  /** The last stream position written to the client. */
  #cursor: number;
  #pulling = false;
  #again = false;
  #closed = false;
  #poll: NodeJS.Timeout | undefined;
  readonly #heartbeat: NodeJS.Timeout;

  constructor(ctx: Context, userId: string, res: ServerResponse, cursor: number, options: StreamOptions) {
    this.#ctx = ctx;
    this.userId = userId;
    this.#res = res;
    this.#cursor = cursor;
    this.#options = options;
    res.on('close', () => this.#cleanUp());
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      // Tells nginx-style proxies not to buffer the stream.
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${RETRY_MS}\n\n`);
    // A comment line keeps proxies and load balancers from closing an idle connection.
    this.#heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS).unref();
  }

  /** Asks the stream to look for new changes. Calls coalesce: one query in flight, at most one more queued. */
  wake(): void {
    if (this.#closed) return;
    if (this.#pulling) {
      this.#again = true;
      return;
    }
    void this.#pull();
  }

  /** Writes a live-only frame (no `id`, so it is not replayed and leaves the client's Last-Event-ID alone). */
  send(event: string, data: string): void {
    if (this.#closed || this.#res.writableEnded) return;
    this.#res.write(`event: ${event}\ndata: ${data}\n\n`);
  }

  /** Ends the stream (shutdown, revoked credentials). */
  end(): void {
    if (!this.#res.writableEnded) this.#res.end();
    this.#cleanUp();
  }

  async #pull(): Promise<void> {
    this.#pulling = true;
    clearTimeout(this.#poll);
    try {
      do {
        this.#again = false;
        const rows = await changesSince(this.#ctx.store.db, this.userId, this.#cursor, BATCH);
        if (this.#closed || rows.length === 0) break;
        let frames = '';
        for (const row of rows) {
          // The client has seen every change up to the cursor: a notification created after it is new to them.
          const event = row.created_seq > this.#cursor ? 'notification' : 'notification.updated';
          frames += `id: ${row.seq}\nevent: ${event}\ndata: ${JSON.stringify(presentNotification(row))}\n\n`;
          this.#cursor = row.seq;
        }
        // Pulling more only after the client has taken this batch keeps a slow reader from filling memory.
        if (!this.#res.write(frames)) await this.#drained();
        if (rows.length === BATCH) this.#again = true;
      } while (this.#again && !this.#closed);
    } catch (error) {
      // The next poll tries again; the client keeps its place.
      this.#ctx.log.warn({ err: error, user: this.userId }, 'inbox stream could not read changes');
    } finally {
      this.#pulling = false;
      if (!this.#closed) this.#poll = setTimeout(() => void this.#safetyPoll(), POLL_MS).unref();
    }
  }

  async #safetyPoll(): Promise<void> {
    const authorised = await this.#options.authorised().catch(() => true);
    if (!authorised) this.end();
    else this.wake();
  }

  #drained(): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#res.off('drain', done);
        this.#res.off('close', done);
        resolve();
      };
      this.#res.on('drain', done);
      this.#res.on('close', done);
    });
  }

  #cleanUp(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#poll);
    this.#options.onClose(this);
  }
}

/**
 * The stream's preHandler: a user token from `Authorization: Bearer`, or from `?access_token=` because a
 * browser's EventSource cannot set headers. The query form is redacted from request logs
 * ({@link redactAccessToken}).
 */
export function streamAuth(deps: Deps) {
  return async (request: FastifyRequest, _reply: FastifyReply): Promise<void> => {
    const principal = await deps.auth.identify(credentialsOf(request));
    if (principal === null) {
      throw new HeraldError(
        'unauthorized',
        'Send a user token as "Authorization: Bearer <token>" or, from a browser, as ?access_token=<token>',
      );
    }
    if (principal.kind !== 'user') {
      throw new HeraldError('forbidden', `This needs a user token; a ${principal.kind} token was sent`);
    }
    request.principal = principal;
  };
}

/** The `Authorization` header value a stream request carries, directly or as `?access_token=`. */
export function credentialsOf(request: FastifyRequest): string | undefined {
  const token = (request.query as { access_token?: string } | undefined)?.access_token;
  return request.headers.authorization ?? (token === undefined ? undefined : `Bearer ${token}`);
}

/**
 * Where a stream starts: the position in `Last-Event-ID` (header, or `?last_event_id=` for clients that
 * cannot set it), so everything after it is replayed; without one, the user's latest position (live only).
 */
export async function startingPosition(
  ctx: Context,
  request: FastifyRequest,
  userId: string,
): Promise<number> {
  const header = request.headers['last-event-id'];
  const query = (request.query as { last_event_id?: string } | undefined)?.last_event_id;
  const text = (Array.isArray(header) ? header[0] : header) ?? query;
  const latest = await latestSeq(ctx.store.db, userId);
  if (text === undefined || text.trim() === '') return latest;
  if (!/^\d{1,15}$/.test(text.trim())) {
    throw invalid('Last-Event-ID', 'must be the id of an event this stream sent (a whole number)');
  }
  // An id beyond anything this inbox holds (a restored database) would otherwise hold back every new frame.
  return Math.min(Number(text.trim()), latest);
}

/** A request URL with any `access_token` query value replaced, for logs. */
export function redactAccessToken(url: string): string {
  return url.replace(/([?&]access_token=)[^&#]*/gi, '$1[redacted]');
}
