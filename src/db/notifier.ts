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
