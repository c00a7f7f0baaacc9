import type { ServerResponse } from 'node:http';
import type { Context } from '../context.ts';
import { queueFrames } from '../queues/queues.live.ts';
import { InboxStream, type StreamOptions } from './stream.ts';

/**
 * Open streams one user may hold on a node (tabs, devices); opening one more ends their oldest, so a client that
 * leaks connections cannot hold more than this.
 */
export const STREAMS_PER_USER = 10;
/** Open streams a node holds in all; beyond this, new streams are refused (503) until some close. */
export const MOST_STREAMS = 10_000;

/**
 * Keeps this node's open inbox streams and wakes them when an inbox changes. Changes are announced on the
 * notifier's `inbox` channel as comma-separated user ids (from this node, or from others over PostgreSQL
 * LISTEN/NOTIFY); each woken stream then reads its own changes from the database. Shared queue changes come
 * on the `queues` channel as item ids and go out as live-only `queue.updated` frames (src/queues/queues.live.ts).
 */
export class InboxHub {
  readonly #ctx: Context;
  readonly #byUser = new Map<string, Set<InboxStream>>();
  #open = 0;
  #unsubscribe: (() => void) | undefined;
  #unsubscribeQueues: (() => void) | undefined;
  #closed = false;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /** Starts listening for inbox changes. Streams opened before still work: they poll. */
  start(): void {
    if (this.#unsubscribe !== undefined || this.#closed) return;
    this.#unsubscribe = this.#ctx.store.notifier.subscribe('inbox', (payload) =>
      this.wake(payload.split(',')),
    );
    this.#unsubscribeQueues = this.#ctx.store.notifier.subscribe(
      'queues',
      (payload) => void this.#queueChanged(payload.split(',')),
    );
  }

  /** Whether this node holds as many streams as it may ({@link MOST_STREAMS}). */
  full(): boolean {
    return this.#open >= MOST_STREAMS;
  }

  /**
   * Opens a stream for `userId` on `res` (a hijacked reply) starting after position `cursor`; it pulls at once,
   * so changes committed before it was registered are not missed.
   */
  open(userId: string, res: ServerResponse, cursor: number, authorised: StreamOptions['authorised']): void {
    // A client gone before its stream existed would never send the 'close' that the clean-up waits for.
    if (this.#closed || res.destroyed || res.socket?.destroyed !== false) {
      res.destroy();
      return;
    }
    const stream = new InboxStream(this.#ctx, userId, res, cursor, {
      authorised,
      onClose: (s) => this.#remove(s),
    });
    let streams = this.#byUser.get(userId);
    if (streams === undefined) {
      streams = new Set();
      this.#byUser.set(userId, streams);
    }
    // Sets iterate in insertion order: the first is the oldest.
    if (streams.size >= STREAMS_PER_USER) streams.values().next().value?.end();
    streams.add(stream);
    this.#open++;
    this.#ctx.metrics.streamClients.inc();
    stream.wake();
  }

  /** Wakes every open stream of these users. */
  wake(userIds: Iterable<string>): void {
    for (const userId of userIds) {
      const streams = this.#byUser.get(userId);
      if (streams !== undefined) for (const stream of streams) stream.wake();
    }
  }

  /** Ends every open stream so shutdown is not held up by them; clients reconnect to another node. */
  close(): void {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#unsubscribeQueues?.();
    this.#unsubscribeQueues = undefined;
    for (const streams of [...this.#byUser.values()]) {
      for (const stream of [...streams]) stream.end();
    }
  }

  /** Sends each changed queue item to the open streams of its queue's members on this node. */
  async #queueChanged(itemIds: string[]): Promise<void> {
    if (this.#byUser.size === 0) return;
    try {
      for (const frame of await queueFrames(this.#ctx.store.db, itemIds)) {
        for (const [userId, streams] of this.#byUser) {
          if (!frame.members.has(userId)) continue;
          for (const stream of streams) stream.send('queue.updated', frame.data);
        }
      }
    } catch (error) {
      // Live-only frames: a client that missed one sees the item's state when it lists its queues.
      this.#ctx.log.warn({ err: error }, 'queue change could not be sent to inbox streams');
    }
  }

  #remove(stream: InboxStream): void {
    const streams = this.#byUser.get(stream.userId);
    if (streams === undefined || !streams.delete(stream)) return;
    if (streams.size === 0) this.#byUser.delete(stream.userId);
    this.#open--;
    this.#ctx.metrics.streamClients.dec();
  }
}
