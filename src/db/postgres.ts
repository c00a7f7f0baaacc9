import { randomUUID } from 'node:crypto';
import { Kysely, PostgresDialect, type SelectQueryBuilder, sql } from 'kysely';
import pg from 'pg';
import type { EngineParts } from './engine.ts';
import { CHANNELS, type Channel, LocalNotifier, type Notifier } from './notifier.ts';
import type { Database } from './tables.ts';

// int8 columns hold millisecond timestamps and counters, all well inside Number's safe range.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number(value));

export interface PostgresOptions {
  /** Schema to work in (tests give each run its own). */
  schema?: string;
  poolSize?: number;
  onError?: (error: Error) => void;
}

// Every allocator of inbox sequence numbers holds this lock until it commits, so numbers become visible in
// the order they were handed out and an SSE client resuming after `Last-Event-ID` never skips one.
const INBOX_SEQ_LOCK = 72_616_001;

/** Opens a pool on PostgreSQL; many Herald nodes may share the database. */
export function connectPostgres(url: string, options: PostgresOptions = {}): EngineParts {
  const searchPath = options.schema ? `-c search_path=${options.schema}` : undefined;
  const pool = new pg.Pool({ connectionString: url, max: options.poolSize ?? 10, options: searchPath });
  pool.on('error', (error) => options.onError?.(error));
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  const notifier = new PostgresNotifier(url, options.schema ?? 'public', pool, options.onError);
  return {
    engine: 'postgres',
    db,
    notifier,
    lockForClaim: <QB extends SelectQueryBuilder<Database, keyof Database, object>>(qb: QB) =>
      qb.forUpdate().skipLocked() as QB,
    async allocateSeq(trx, count) {
      await sql`select pg_advisory_xact_lock(${INBOX_SEQ_LOCK})`.execute(trx);
      const row = await sql<{ last: number }>`
        select setval('inbox_seq', nextval('inbox_seq') + ${count - 1}) as last`.execute(trx);
      return row.rows[0]!.last - count + 1;
    },
    // Every PostgreSQL commit is durable (synchronous_commit is on by default).
    transactDurably: (fn) => db.transaction().execute(fn),
    async close() {
      await notifier.close();
      await db.destroy();
    },
  };
}

/** LISTEN/NOTIFY across nodes, plus the in-process path so this node hears itself at once. */
class PostgresNotifier implements Notifier {
  readonly #local = new LocalNotifier();
  readonly #url: string;
  readonly #prefix: string;
  readonly #pool: pg.Pool;
  readonly #onError: ((error: Error) => void) | undefined;
  // Tells this notifier's own messages apart from other nodes' (also several nodes in one process).
  readonly #node = randomUUID().slice(0, 8);
  #client: pg.Client | undefined;
  #closed = false;
  #listening: Promise<void> | undefined;

  constructor(url: string, schema: string, pool: pg.Pool, onError?: (error: Error) => void) {
    this.#url = url;
    this.#prefix = `herald_${schema}_`.toLowerCase().replace(/[^a-z0-9_]/g, '_');
    this.#pool = pool;
    this.#onError = onError;
  }

  publish(channel: Channel, payload: string): void {
    this.#local.publish(channel, payload);
    this.#pool
      .query('select pg_notify($1, $2)', [this.#prefix + channel, `${this.#node}:${payload}`])
      .catch((error: Error) => this.#onError?.(error));
  }

  subscribe(channel: Channel, listener: (payload: string) => void): () => void {
    this.#listening ??= this.#listen();
    return this.#local.subscribe(channel, listener);
  }

  async #listen(): Promise<void> {
    while (!this.#closed) {
      const client = new pg.Client({ connectionString: this.#url });
      try {
        await client.connect();
        this.#client = client;
        const ended = new Promise<void>((resolve) => {
          client.on('error', (error) => {
            this.#onError?.(error);
            resolve();
          });
          client.on('end', () => resolve());
        });
        client.on('notification', (message) => {
          const channel = message.channel.slice(this.#prefix.length) as Channel;
          const payload = message.payload ?? '';
          const colon = payload.indexOf(':');
          // Our own notifications were already delivered in-process.
          if (payload.slice(0, colon) === this.#node) return;
          this.#local.publish(channel, payload.slice(colon + 1));
        });
        for (const channel of CHANNELS) {
          await client.query(`listen ${this.#prefix}${channel}`);
        }
        await ended;
      } catch (error) {
        if (!this.#closed) this.#onError?.(error as Error);
      }
      this.#client = undefined;
      await client.end().catch(() => {});
      if (!this.#closed) await new Promise((r) => setTimeout(r, 1000));
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#client?.end().catch(() => {});
    await this.#local.close();
  }
}
