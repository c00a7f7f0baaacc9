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

// Two Int32 cells: the next ticket to hand out, and the ticket whose turn it is.
const NEXT = 0;
const SERVING = 1;

/** The memory a {@link ThreadWriteLock} lives in; hand the same buffer to every thread that opens the file. */
export function threadLockMemory(): SharedArrayBuffer {
  return new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT);
}

/**
 * A first-come, first-served lock across threads (a ticket lock): each thread holds at most one ticket at a
 * time, since a thread's queries already run one after another on its single connection. The counters wrap
 * around together, so only equality matters.
 */
export class ThreadWriteLock {
  readonly #cells: Int32Array;

  constructor(memory: SharedArrayBuffer) {
    this.#cells = new Int32Array(memory);
  }

  async acquire(): Promise<void> {
    const ticket = Atomics.add(this.#cells, NEXT, 1);
    if (Atomics.load(this.#cells, SERVING) === ticket) return;
    // A pending Atomics.waitAsync does not keep a thread's event loop alive; this timer does, meanwhile.
    const keepAlive = setInterval(() => {}, 60_000);
    try {
      for (;;) {
        const serving = Atomics.load(this.#cells, SERVING);
        if (serving === ticket) return;
        const wait = Atomics.waitAsync(this.#cells, SERVING, serving);
        if (wait.async) await wait.value;
      }
    } finally {
      clearInterval(keepAlive);
    }
  }

  release(): void {
    Atomics.add(this.#cells, SERVING, 1);
    Atomics.notify(this.#cells, SERVING);
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
