import {
  CompiledQuery,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  SelectQueryNode,
  SqliteDialect,
  type TransactionSettings,
} from 'kysely';

/*
 * Several threads of one process on one SQLite file. SQLite lets one connection write at a time; a connection
 * that finds the file locked waits in SQLite's busy handler, which sleeps and blocks its thread. For the HTTP
 * thread that would stall every request. So the threads take turns through a lock of their own, in shared
 * memory, that they wait for asynchronously (Atomics.waitAsync): a thread waiting for its turn keeps serving
 * requests, and SQLite never finds the file locked. Reads need no turn: in WAL mode they see the last commit
 * and never wait for a writer.
 */

// Three Int32 cells: whether the lock is held; how many first-in-line threads wait for it; how many other
// threads have waited past MAX_DEFER_MS.
const HELD = 0;
const FIRST_WAITING = 1;
const OVERDUE = 2;
/** Longest a background write waits behind request writes before it takes its turn regardless. */
const MAX_DEFER_MS = 25;
/** How soon a thread looks again at a free lock kept for another thread. */
const RECHECK_MS = 1;

/** The memory a {@link ThreadWriteLock} lives in; hand the same buffer to every thread that opens the file. */
export function threadLockMemory(): SharedArrayBuffer {
  return new SharedArrayBuffer(3 * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * A lock across threads, with precedence: a thread that serves requests (`first`) takes the lock before the
 * background threads waiting for it, so a publisher waiting for its 202 does not queue behind routing; a
 * background thread that has waited MAX_DEFER_MS goes next regardless, so background work slows down under a
 * burst of requests but never stops. Each thread holds at most one acquire at a time (its queries already run
 * one after another on its single connection).
 */
export class ThreadWriteLock {
  readonly #cells: Int32Array;
  readonly #first: boolean;
  readonly #maxDeferMs: number;

  constructor(memory: SharedArrayBuffer, options: { first?: boolean; maxDeferMs?: number } = {}) {
    this.#cells = new Int32Array(memory);
    this.#first = options.first === true;
    this.#maxDeferMs = options.maxDeferMs ?? MAX_DEFER_MS;
  }

  async acquire(): Promise<void> {
    const cells = this.#cells;
    if (this.#mayTake(false) && Atomics.compareExchange(cells, HELD, 0, 1) === 0) return;
    if (this.#first) Atomics.add(cells, FIRST_WAITING, 1);
    // A pending Atomics.waitAsync does not keep a thread's event loop alive; this timer does, meanwhile.
    const keepAlive = setInterval(() => {}, 60_000);
    const deadline = performance.now() + this.#maxDeferMs;
    let overdue = false;
    try {
      for (;;) {
        if (!this.#first && !overdue && performance.now() >= deadline) {
          overdue = true;
          Atomics.add(cells, OVERDUE, 1);
        }
        const held = Atomics.load(cells, HELD);
        if (held === 0 && this.#mayTake(overdue)) {
          if (Atomics.compareExchange(cells, HELD, 0, 1) === 0) return;
          continue;
        }
        // Held: wait for the release. Free but kept for another thread: that thread may take and release it
        // before this wait begins, so look again soon. A deferring background thread also wakes at its deadline.
        const patient = this.#first || overdue;
        const untilDeadline = Math.max(1, deadline - performance.now());
        const timeout =
          held === 1 ? (patient ? undefined : untilDeadline) : Math.min(RECHECK_MS, untilDeadline);
        const wait = Atomics.waitAsync(cells, HELD, held, timeout);
        if (wait.async) await wait.value;
      }
    } finally {
      clearInterval(keepAlive);
      if (this.#first) Atomics.sub(cells, FIRST_WAITING, 1);
      if (overdue) Atomics.sub(cells, OVERDUE, 1);
    }
  }

  release(): void {
    Atomics.store(this.#cells, HELD, 0);
    Atomics.notify(this.#cells, HELD);
  }

  /** Whether this thread may take the lock now: a background thread defers to waiting first-in-line threads. */
  #mayTake(overdue: boolean): boolean {
    if (this.#first) return Atomics.load(this.#cells, OVERDUE) === 0;
    return overdue || Atomics.load(this.#cells, FIRST_WAITING) === 0;
  }
}

/**
 * Kysely's SQLite dialect with every write taking its turn on a {@link ThreadWriteLock}: a transaction holds
 * it from `begin` to `commit` or `rollback` (so its reads and writes see one state of the file, and its
 * upgrade to a writer never fails), a write outside a transaction holds it for that statement.
 */
export class ThreadSharedSqliteDialect extends SqliteDialect {
  readonly #lock: ThreadWriteLock;

  constructor(config: ConstructorParameters<typeof SqliteDialect>[0], lock: ThreadWriteLock) {
    super(config);
    this.#lock = lock;
  }

  override createDriver(): Driver {
    return new TurnTakingDriver(super.createDriver(), this.#lock);
  }
}

class TurnTakingDriver implements Driver {
  readonly #inner: Driver;
  readonly #lock: ThreadWriteLock;
  // One connection per thread; Kysely hands it to one user at a time. `#raw` is SQLite's own, `#connection`
  // the one Kysely is given, which takes turns for writes.
  #raw: DatabaseConnection | undefined;
  #connection: DatabaseConnection | undefined;
  #inTransaction = false;

  constructor(inner: Driver, lock: ThreadWriteLock) {
    this.#inner = inner;
    this.#lock = lock;
  }

  init(): Promise<void> {
    return this.#inner.init();
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const inner = await this.#inner.acquireConnection();
    this.#raw = inner;
    this.#connection ??= {
      executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> =>
        this.#inTransaction || SelectQueryNode.is(query.query)
          ? inner.executeQuery<R>(query)
          : this.#inTurn(() => inner.executeQuery<R>(query)),
      streamQuery: (query, chunkSize) => inner.streamQuery(query, chunkSize),
    };
    return this.#connection;
  }

  async beginTransaction(_connection: DatabaseConnection, _settings: TransactionSettings): Promise<void> {
    await this.#lock.acquire();
    try {
      // Immediate: the file's write lock at once, so nothing outside this process can slip in between.
      await this.#raw!.executeQuery(CompiledQuery.raw('begin immediate'));
      this.#inTransaction = true;
    } catch (error) {
      this.#lock.release();
      throw error;
    }
  }

  async commitTransaction(): Promise<void> {
    await this.#end('commit');
  }

  async rollbackTransaction(): Promise<void> {
    await this.#end('rollback');
  }

  async savepoint(...args: Parameters<NonNullable<Driver['savepoint']>>): Promise<void> {
    await this.#inner.savepoint!(...args);
  }

  async rollbackToSavepoint(...args: Parameters<NonNullable<Driver['rollbackToSavepoint']>>): Promise<void> {
    await this.#inner.rollbackToSavepoint!(...args);
  }

  async releaseSavepoint(...args: Parameters<NonNullable<Driver['releaseSavepoint']>>): Promise<void> {
    await this.#inner.releaseSavepoint!(...args);
  }

  releaseConnection(connection: DatabaseConnection): Promise<void> {
    return this.#inner.releaseConnection(connection);
  }

  destroy(): Promise<void> {
    return this.#inner.destroy();
  }

  async #end(statement: 'commit' | 'rollback'): Promise<void> {
    const raw = this.#raw!;
    // A failed commit is followed by Kysely's rollback: the turn is given back once, by whichever ends it.
    if (!this.#inTransaction) {
      await raw.executeQuery(CompiledQuery.raw(statement));
      return;
    }
    try {
      await raw.executeQuery(CompiledQuery.raw(statement));
    } finally {
      this.#inTransaction = false;
      this.#lock.release();
    }
  }

  async #inTurn<T>(run: () => Promise<T>): Promise<T> {
    await this.#lock.acquire();
    try {
      return await run();
    } finally {
      this.#lock.release();
    }
  }
}
