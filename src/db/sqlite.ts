import { once } from 'node:events';
import { mkdirSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import {
  Kysely,
  type SelectQueryBuilder,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
  sql,
  type Transaction,
} from 'kysely';
import type { EngineParts, StoreOptions } from './engine.ts';
import { LocalNotifier } from './notifier.ts';
import { ThreadSharedSqliteDialect, ThreadWriteLock } from './sqlite-shared.ts';
import type { Database } from './tables.ts';

/**
 * Opens the embedded SQLite database: one file in WAL mode.
 *
 * Durability is chosen per transaction. By default `synchronous=normal`: in WAL mode a commit survives the
 * process being killed, and only an OS crash or power cut can roll back the latest ones. That suits the
 * background bookkeeping (leases, routing, delivery outcomes), which is idempotent and redone if lost.
 * What Herald acknowledges to a publisher goes through {@link EngineParts.transactDurably}: after the commit,
 * the WAL is flushed to disk (fdatasync, covering every earlier commit too) before the caller is answered, as
 * `synchronous=full` would. The flush runs on libuv's thread pool rather than inside SQLite's commit, so the
 * event loop keeps parsing requests meanwhile (and the next group commit gathers them); group commit makes
 * it one flush per batch of events. Checkpoints stay under `synchronous=normal`, which syncs the WAL before
 * and the database file after each one.
 *
 * With `threadLock`, other threads of this process open the same file too (see sqlite-shared.ts): writes take
 * turns on that lock, and wake-ups reach every thread. Then the commits no longer checkpoint (copy the WAL back
 * into the database file, which SQLite otherwise does inside the commit that crosses 1,000 pages, fsyncs
 * included): the store opened with `checkpointer` starts a thread that does it every CHECKPOINT_MS, outside the
 * write turn, so no commit, and no thread waiting for its turn, pays for it.
 */
export function connectSqlite(
  path: string,
  options: Pick<StoreOptions, 'threadLock' | 'checkpointer' | 'firstInLine' | 'onError'> = {},
): EngineParts {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const raw = new DatabaseSync(path);
  raw.exec(`
    pragma journal_mode = wal;
    pragma synchronous = normal;
    pragma busy_timeout = 5000;
    pragma foreign_keys = on;
    pragma cache_size = -32768;
    pragma temp_store = memory;
  `);
  const config = { database: adapt(raw) };
  const { threadLock } = options;
  const shared = threadLock !== undefined && path !== ':memory:';
  // A backstop only: should the checkpointer stall, commits still keep the WAL from growing without bound.
  if (shared) raw.exec(`pragma wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  const stopCheckpoints =
    shared && options.checkpointer ? checkpointInBackground(path, options.onError) : undefined;
  const dialect = shared
    ? new ThreadSharedSqliteDialect(
        config,
        new ThreadWriteLock(threadLock, { first: options.firstInLine === true }),
      )
    : new SqliteDialect(config);
  const db = new Kysely<Database>({ dialect });
  // The WAL exists from the first write on and, while this connection is open, is never deleted (only reused
  // from its start after a checkpoint), so one handle serves for the life of the store.
  let walHandle: Promise<FileHandle | undefined> | undefined;
  const walFile = () => (walHandle ??= open(`${path}-wal`, 'r').catch(() => undefined));
  return {
    engine: 'sqlite',
    db,
    notifier: new LocalNotifier(shared ? `herald:${resolve(path)}` : undefined),
    // One writer at a time: a claim cannot race another claim, so no row locks are needed.
    lockForClaim: <QB extends SelectQueryBuilder<Database, keyof Database, object>>(qb: QB) => qb,
    async allocateSeq(trx, count) {
      const row = await sql<{ value: number }>`
        update counters set value = value + ${count} where name = 'inbox_seq' returning value`.execute(trx);
      return row.rows[0]!.value - count + 1;
    },
    async transactDurably(fn) {
      const wal = path === ':memory:' ? undefined : await walFile();
      if (wal === undefined) return fullySynchronous(db, fn);
      const result = await db.transaction().execute(fn);
      await wal.datasync();
      return result;
    },
    async close() {
      await stopCheckpoints?.();
      await (await walHandle)?.close();
      await db.destroy();
    },
  };
}

// Pages the WAL may hold before a commit checkpoints it itself, when a checkpointer runs (64 MB of 4 KB pages).
const BACKSTOP_PAGES = 16_384;
const CHECKPOINT_MS = 100;

/**
 * Starts the thread that checkpoints the WAL every CHECKPOINT_MS (checkpoint-thread.ts); returns a function that
 * stops it. A thread of its own, so that copying pages and syncing the file never block an event loop.
 */
function checkpointInBackground(path: string, onError?: (error: Error) => void): () => Promise<void> {
  const thread = new Worker(new URL('./checkpoint-thread.ts', import.meta.url), {
    workerData: { path, everyMs: CHECKPOINT_MS },
    name: 'herald-checkpoint',
  });
  // Should it die, commits past the backstop still checkpoint: reported, not fatal.
  thread.on('error', (error) => onError?.(error));
  const exited = once(thread, 'exit');
  thread.unref();
  return async () => {
    thread.postMessage('stop');
    await exited;
  };
}

/** The fallback when the WAL cannot be opened: SQLite syncs inside the commit itself. */
function fullySynchronous<T>(
  db: Kysely<Database>,
  fn: (trx: Transaction<Database>) => Promise<T>,
): Promise<T> {
  // One connection: the pragma and the transaction run back to back, nothing else in between.
  return db.connection().execute(async (connection) => {
    await sql`pragma synchronous = full`.execute(connection);
    try {
      return await connection.transaction().execute(fn);
    } finally {
      await sql`pragma synchronous = normal`.execute(connection);
    }
  });
}

/**
 * Adapts `node:sqlite` to the better-sqlite3 shape Kysely's SqliteDialect expects, with caches of prepared
 * statements (Kysely compiles the same SQL text for the same query shape).
 */
function adapt(raw: DatabaseSync): SqliteDatabase {
  // Short statements are the repeated queries. Multi-row inserts compile to a large, different statement
  // for each row count, so only the few most recent are kept (under load, the full-chunk ones repeat):
  // caching every size would hold hundreds of megabytes.
  const short = new StatementCache(1_000);
  const long = new StatementCache(8);
  return {
    close: () => raw.close(),
    prepare(text: string): SqliteStatement {
      const cache = text.length <= 4_096 ? short : long;
      let statement = cache.get(text);
      if (statement === undefined) {
        statement = wrap(raw.prepare(text));
        cache.set(text, statement);
      }
      return statement;
    },
  };
}

/** A least-recently-used map of prepared statements. */
class StatementCache {
  readonly #max: number;
  readonly #map = new Map<string, SqliteStatement>();

  constructor(max: number) {
    this.#max = max;
  }

  get(text: string): SqliteStatement | undefined {
    const statement = this.#map.get(text);
    if (statement !== undefined) {
      // Re-inserting moves it to the end: the first key is then always the least recently used.
      this.#map.delete(text);
      this.#map.set(text, statement);
    }
    return statement;
  }

  set(text: string, statement: SqliteStatement): void {
    if (this.#map.size >= this.#max) this.#map.delete(this.#map.keys().next().value!);
    this.#map.set(text, statement);
  }
}

type Bindable = null | number | bigint | string | Uint8Array;

function bind(parameters: ReadonlyArray<unknown>): Bindable[] {
  return parameters.map((p) => {
    if (p === undefined) return null;
    if (typeof p === 'boolean') return p ? 1 : 0;
    if (p instanceof Date) return p.getTime();
    return p as Bindable;
  });
}

function wrap(statement: StatementSync): SqliteStatement {
  return {
    reader: statement.columns().length > 0,
    all: (parameters) => statement.all(...bind(parameters)),
    run: (parameters) => statement.run(...bind(parameters)),
    iterate: (parameters) => statement.iterate(...bind(parameters)),
  };
}
