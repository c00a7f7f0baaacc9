import { EventEmitter } from 'node:events';
import { BroadcastChannel } from 'node:worker_threads';

/**
 * Wake-ups between parts of Herald: "new events to route", "deliveries due", "inbox of these users changed",
 * "these queue items changed". They only shorten latency: every worker also polls, so a lost wake-up delays
 * work but never loses it (a lost `queues` one loses a live-only stream frame; its item is still listed).
 * On SQLite they stay in this process (reaching its worker thread too); on PostgreSQL they also travel to
 * every other node by LISTEN/NOTIFY.
 */
export interface Notifier {
  /** Tell every node (this one included). Call after the commit that made the change visible. */
  publish(channel: Channel, payload: string): void;
  subscribe(channel: Channel, listener: (payload: string) => void): () => void;
  close(): Promise<void>;
}

export const CHANNELS = ['events', 'deliveries', 'inbox', 'queues', 'announcements'] as const;
export type Channel = (typeof CHANNELS)[number];

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

/**
 * The in-process notifier (SQLite, or the local half of the PostgreSQL one). Given a name, it also reaches
 * the notifiers of that name in this process's other threads (a BroadcastChannel).
 */
export class LocalNotifier implements Notifier {
  readonly #emitter = new EventEmitter().setMaxListeners(0);
  readonly #threads: BroadcastChannel | undefined;
  // Wake-ups for other threads, sent together once per turn of the event loop (a message between threads
  // costs far more than an in-process emit); repeats of the same one are sent once.
  #outbox = new Set<string>();

  constructor(sharedAs?: string) {
    if (sharedAs === undefined) return;
    this.#threads = new BroadcastChannel(sharedAs);
    this.#threads.onmessage = (message) => {
      for (const [channel, payload] of (message as { data: [Channel, string][] }).data)
        this.#emitter.emit(channel, payload);
    };
    // Wake-ups never keep the process alive.
    this.#threads.unref();
  }

  publish(channel: Channel, payload: string): void {
    this.#emitter.emit(channel, payload);
    if (this.#threads === undefined) return;
    if (this.#outbox.size === 0) setImmediate(() => this.#send());
    this.#outbox.add(`${channel}\u0000${payload}`);
  }

  #send(): void {
    // Emptied by close().
    if (this.#outbox.size === 0) return;
    const messages = [...this.#outbox].map((m) => m.split('\u0000') as [Channel, string]);
    this.#outbox.clear();
    this.#threads?.postMessage(messages);
  }

  subscribe(channel: Channel, listener: (payload: string) => void): () => void {
    this.#emitter.on(channel, listener);
    return () => this.#emitter.off(channel, listener);
  }

  async close(): Promise<void> {
    this.#outbox.clear();
    this.#threads?.close();
    this.#emitter.removeAllListeners();
  }
}
