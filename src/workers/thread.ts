import { Worker } from 'node:worker_threads';
import type { Config } from '../config.ts';
import type { MetricsSnapshot } from '../metrics.ts';
import type { WorkerShare } from './workers.ts';

/** What a workers' thread is started with. */
export interface ThreadData {
  readonly config: Config;
  /** The part of the background work it runs. */
  readonly share: WorkerShare;
  /** The SQLite write lock's memory, shared with the HTTP thread; none on PostgreSQL. */
  readonly threadLock: SharedArrayBuffer | undefined;
}

/** How a share's thread is named: in its log lines' `thread`, and (prefixed `herald-`) as the thread. */
export function threadName(share: WorkerShare): string {
  return share === 'all' ? 'workers' : share;
}

export type ToThread = { kind: 'stop' } | { kind: 'metrics'; id: number };
export type FromThread =
  | { kind: 'started' }
  | { kind: 'metrics'; id: number; snapshot: MetricsSnapshot }
  | { kind: 'stopped' };

// A thread that cannot answer a metrics scrape this fast is shown without its figures for that scrape.
const METRICS_TIMEOUT_MS = 2_000;

/**
 * Background workers (routing, delivery, announcements, timers, or a share of them: see WorkerShare) running in
 * a worker thread, so that they and the HTTP thread each can use a core, and a backlog of background work never
 * holds up requests. They share the database with the HTTP thread (on SQLite taking turns to write, see
 * db/sqlite-shared.ts) and hear its wake-ups through the notifier, as another node would. This is the HTTP
 * thread's handle on one such thread.
 */
export class WorkersThread {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, (snapshot: MetricsSnapshot) => void>();
  #nextId = 0;
  #stopping = false;
  readonly #exited: Promise<void>;

  private constructor(worker: Worker, onDeath: (error: Error) => void) {
    this.#worker = worker;
    worker.on('message', (message: FromThread) => {
      if (message.kind !== 'metrics') return;
      this.#waiting.get(message.id)?.(message.snapshot);
      this.#waiting.delete(message.id);
    });
    let failure: Error | undefined;
    worker.on('error', (error) => {
      failure = error;
    });
    this.#exited = new Promise((resolve) => {
      worker.once('exit', (code) => {
        for (const answer of this.#waiting.values()) answer([]);
        this.#waiting.clear();
        if (!this.#stopping) onDeath(failure ?? new Error(`a workers' thread exited with code ${code}`));
        resolve();
      });
    });
  }

  /**
   * Starts the thread; resolves once its workers run. `onDeath` is told if the thread ever ends without being
   * asked to (an uncaught error): the process cannot do its work without it.
   */
  static async start(data: ThreadData, onDeath: (error: Error) => void): Promise<WorkersThread> {
    const worker = new Worker(new URL('./thread-entry.ts', import.meta.url), {
      workerData: data,
      name: `herald-${threadName(data.share)}`,
    });
    await new Promise<void>((resolve, reject) => {
      const onMessage = (message: FromThread) => {
        if (message.kind !== 'started') return;
        worker.off('error', reject);
        worker.off('exit', onEarlyExit);
        resolve();
      };
      const onEarlyExit = (code: number) => reject(new Error(`a workers' thread exited with code ${code}`));
      worker.on('message', onMessage);
      worker.once('error', reject);
      worker.once('exit', onEarlyExit);
    });
    return new WorkersThread(worker, onDeath);
  }

  /** The thread's metrics, to merge into `/metrics`. */
  metrics(): Promise<MetricsSnapshot> {
    if (this.#stopping) return Promise.resolve([]);
    const id = this.#nextId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        resolve([]);
      }, METRICS_TIMEOUT_MS);
      this.#waiting.set(id, (snapshot) => {
        clearTimeout(timer);
        resolve(snapshot);
      });
      this.#worker.postMessage({ kind: 'metrics', id } satisfies ToThread);
    });
  }

  /** Asks the workers to finish the work in flight and the thread to end; resolves when it has. */
  async stop(): Promise<void> {
    if (!this.#stopping) {
      this.#stopping = true;
      this.#worker.postMessage({ kind: 'stop' } satisfies ToThread);
    }
    await this.#exited;
  }
}
