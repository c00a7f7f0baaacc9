import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import {
  Kysely,
  type SelectQueryBuilder,
  type SqliteDatabase,
  SqliteDialect,
  type SqliteStatement,
  sql,
} from 'kysely';
import type { EngineParts } from './engine.ts';
import { LocalNotifier } from './notifier.ts';
import type { Database } from './tables.ts';

/**
 * Opens the embedded SQLite database: one file in WAL mode.
 *
 * Durability is chosen per transaction. By default `synchronous=normal`: in WAL mode a commit survives the
 * process being killed, and only an OS crash or power cut can roll back the latest ones. That suits the
 * background bookkeeping (leases, routing, delivery outcomes), which is idempotent and redone if lost.
 * What Herald acknowledges to a publisher goes through {@link EngineParts.transactDurably}, which commits
 * with `synchronous=full` (an fsync of the WAL, covering every earlier commit too); group commit makes
 * that one fsync per batch of events.
 */
export function connectSqlite(path: string): EngineParts {
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
  const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: adapt(raw) }) });
  return {
    engine: 'sqlite',
    db,
    notifier: new LocalNotifier(),
    // One writer at a time: a claim cannot race another claim, so no row locks are needed.
    lockForClaim: <QB extends SelectQueryBuilder<Database, keyof Database, object>>(qb: QB) => qb,
    async allocateSeq(trx, count) {
      const row = await sql<{ value: number }>`
        update counters set value = value + ${count} where name = 'inbox_seq' returning value`.execute(trx);
      return row.rows[0]!.value - count + 1;
    },
    transactDurably(fn) {
      // One connection: the pragma and the transaction run back to back, nothing else in between.
      return db.connection().execute(async (connection) => {
        await sql`pragma synchronous = full`.execute(connection);
        try {
          return await connection.transaction().execute(fn);
        } finally {
          await sql`pragma synchronous = normal`.execute(connection);
        }
      });
    },
    async close() {
      await db.destroy();
    },
  };
}

/**
 * Adapts `node:sqlite` to the better-sqlite3 shape Kysely's SqliteDialect expects, with a small cache of
 * prepared statements (Kysely compiles the same SQL text for the same query shape).
 */
const MAX_CACHED = 200;
const MAX_CACHED_SQL = 4_096;

function adapt(raw: DatabaseSync): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    close: () => raw.close(),
    prepare(text: string): SqliteStatement {
      let statement = cache.get(text);
      if (statement === undefined) {
        statement = wrap(raw.prepare(text));
        // Multi-row inserts make a different, large statement for every row count: caching those would
        // hold hundreds of megabytes of compiled SQL for little gain, so only short texts are kept.
        if (text.length <= MAX_CACHED_SQL) {
          if (cache.size >= MAX_CACHED) cache.delete(cache.keys().next().value!);
          cache.set(text, statement);
        }
      }
      return statement;
    },
  };
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
