import { EventEmitter } from 'node:events';

/**
 * Wake-ups between parts of Herald: "new events to route", "deliveries due", "inbox of these users changed",
 * "these queue items changed". They only shorten latency: every worker also polls, so a lost wake-up delays
 * work but never loses it (a lost `queues` one loses a live-only stream frame; its item is still listed).
 * On SQLite they stay in this process; on PostgreSQL they also travel to every other node by LISTEN/NOTIFY.
 */
export interface Notifier {
  /** Tell every node (this one included). Call after the commit that made the change visible. */
  publish(channel: Channel, payload: string): void;
  subscribe(channel: Channel, listener: (payload: string) => void): () => void;
  close(): Promise<void>;
}

export type Channel = 'events' | 'deliveries' | 'inbox' | 'queues';

// LISTEN/NOTIFY payloads must stay under 8,000 bytes.
const NOTIFY_BYTES = 7_000;

/**
 * Publishes ids (users whose inbox changed, queue items) on `channel` as comma-separated lists, each small
 * enough for a PostgreSQL NOTIFY. Call after the commit that made the change visible.
 */
export function publishIds(notifier: Notifier, channel: Channel, ids: Iterable<string>): void {
  let chunk: string[] = [];
  let bytes = 0;
  for (const id of ids) {
    if (bytes + id.length + 1 > NOTIFY_BYTES && chunk.length > 0) {
      notifier.publish(channel, chunk.join(','));
      chunk = [];
      bytes = 0;
    }
    chunk.push(id);
    bytes += id.length + 1;
  }
  if (chunk.length > 0) notifier.publish(channel, chunk.join(','));
}

/** The in-process notifier (SQLite, or the local half of the PostgreSQL one). */
export class LocalNotifier implements Notifier {
  readonly #emitter = new EventEmitter().setMaxListeners(0);

  publish(channel: Channel, payload: string): void {
    this.#emitter.emit(channel, payload);
  }

  subscribe(channel: Channel, listener: (payload: string) => void): () => void {
    this.#emitter.on(channel, listener);
    return () => this.#emitter.off(channel, listener);
  }

  async close(): Promise<void> {
    this.#emitter.removeAllListeners();
  }
}
