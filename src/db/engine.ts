import type { Kysely, SelectQueryBuilder, Transaction } from 'kysely';
import type { Notifier } from './notifier.ts';
import { connectPostgres, type PostgresOptions } from './postgres.ts';
import { connectSqlite } from './sqlite.ts';
import type { Database } from './tables.ts';

export type Engine = 'sqlite' | 'postgres';

/** Either the database or a transaction on it: repositories take whichever their caller holds. */
export type Db = Kysely<Database> | Transaction<Database>;

/**
 * The seam between Herald and its database engine. Everything outside `src/db/` writes one query for both
 * engines; the few things that differ are the members here, with one implementation per engine
 * (`sqlite.ts`, `postgres.ts`).
 */
export interface EngineParts {
  readonly engine: Engine;
  readonly db: Kysely<Database>;
  readonly notifier: Notifier;
  /** Makes a claim's inner select skip rows other nodes hold (`for update skip locked`); SQLite needs nothing. */
  lockForClaim<QB extends SelectQueryBuilder<Database, keyof Database, object>>(qb: QB): QB;
  /** Reserves `count` consecutive inbox sequence numbers inside `trx`; returns the first. */
  allocateSeq(trx: Transaction<Database>, count: number): Promise<number>;
  /**
   * Runs `fn` in a transaction whose commit is on disk (fsync'd) before the promise resolves: for what Herald
   * acknowledges to a client, such as a 202 for an event. Other transactions survive a killed process but may
   * not survive a power cut on SQLite (see sqlite.ts).
   */
  transactDurably<T>(fn: (trx: Transaction<Database>) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type Store = EngineParts;

export interface StoreOptions extends PostgresOptions {
  /**
   * When other threads of this process open the same database: the shared memory of their SQLite write lock
   * (`threadLockMemory()` in sqlite-shared.ts, created once and handed to each). PostgreSQL needs none: each
   * thread is one more client, like another node.
   */
  threadLock?: SharedArrayBuffer;
  /**
   * With `threadLock`: this store starts the thread that copies the WAL back into the database file (SQLite's
   * checkpoints) for all of them (see sqlite.ts). Give it to one store only.
   */
  checkpointer?: boolean;
  /**
   * With `threadLock`: this thread serves requests, and its writes go before the background threads' when
   * both wait for the write turn (see ThreadWriteLock in sqlite-shared.ts).
   */
  firstInLine?: boolean;
}

/** Opens the database named by a URL: `postgres://...` or a SQLite file path (or `:memory:`). */
export function openStore(url: string, options: StoreOptions = {}): Store {
  return isPostgresUrl(url) ? connectPostgres(url, options) : connectSqlite(url, options);
}

export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}
