import { sql, type Transaction } from 'kysely';
import type { Context } from '../context.ts';
import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { Database } from '../db/tables.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';

/*
 * Durable one-shot timers. A timer is a row (`timers`): whoever schedules it does so in the transaction that
 * makes it necessary, so it exists exactly when that change committed. Firing claims due timers with a lease,
 * then fires the claimed batch in one transaction: the timers of one kind due one after the other go to their
 * handler together, in a savepoint that deletes their rows and runs it, so the handler's effects and the
 * timers' end commit together and a timer fires exactly once. If the handler throws, that savepoint is rolled
 * back and its timers fire one by one, each in a savepoint of its own: one that fails alone is put back to be
 * retried later, and the others still fire. A timer still in the table when a process restarts fires as soon
 * as it is due again. One commit per batch, and one handler call per kind: thousands of timers due in the same
 * second (escalations sharing a deadline) fire within it.
 */

/** A timer as a handler sees it. */
export interface Timer {
  id: string;
  kind: string;
  due_at: number;
  payload: unknown;
  /** Earlier firings that failed. */
  attempts: number;
}

/** What a handler may ask for once its transaction has committed (wake streams, workers). */
export type AfterCommit = () => void;

/**
 * Fires timers of one kind inside `trx`, in the order given (due time, then id); throwing rolls back the effects
 * of all of them, and they are fired again one at a time.
 */
export type TimerHandler = (
  trx: Transaction<Database>,
  timers: readonly Timer[],
  now: number,
) => Promise<AfterCommit | undefined>;

/** A {@link TimerHandler} made of one that fires a single timer, for kinds that gain nothing from batches. */
export function oneByOne(
  fire: (trx: Transaction<Database>, timer: Timer, now: number) => Promise<AfterCommit | undefined>,
): TimerHandler {
  return async (trx, timers, now) => {
    const afters: AfterCommit[] = [];
    for (const timer of timers) {
      const after = await fire(trx, timer, now);
      if (after !== undefined) afters.push(after);
    }
    return () => {
      for (const after of afters) after();
    };
  };
}

/** A timer to schedule; `id` makes scheduling idempotent (a second timer with the same id is ignored). */
export interface NewTimer {
  id: string;
  kind: string;
  due_at: number;
  payload: unknown;
}

/** Schedules timers in the caller's transaction; ids already scheduled are left as they are. */
export async function scheduleTimers(db: Db, timers: readonly NewTimer[], now: number): Promise<void> {
  for (const chunk of chunks(timers)) {
    await db
      .insertInto('timers')
      .values(
        chunk.map((t) => ({
          id: t.id,
          kind: t.kind,
          due_at: t.due_at,
          payload: JSON.stringify(t.payload),
          created_at: now,
        })),
      )
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }
}

/** Removes a timer before it fires; returns whether it was still there. */
export async function cancelTimer(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('timers').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

const BATCH = 100;
const POLL_MS = 1_000;
// Covers one batch of handlers; a timer whose lease ran out is fired by whoever claims it next, and the
// delete-then-fire transaction makes sure only one of them does.
const LEASE_MS = 30_000;
const MAX_BACKOFF_MS = 5 * 60_000;
// The shortest wait between passes when a timer is due but was not claimed.
const RECHECK_MS = 5;
// `herald_timers_overdue` counts timers this late, looked at no more often than every OVERDUE_CHECK_MS.
const OVERDUE_MS = 60_000;
const OVERDUE_CHECK_MS = 15_000;

/** The loop that fires due timers with the handler registered for their kind. */
export class TimerWorker {
  readonly #ctx: Context;
  readonly #handlers: ReadonlyMap<string, TimerHandler>;
  readonly #loop: WorkerLoop;
  #released = false;
  #claimed = 0;
  #checkedOverdue = 0;

  /** `handlers` by timer kind; several modules' registries may be given (a kind must appear in one only). */
  constructor(ctx: Context, ...handlers: Record<string, TimerHandler>[]) {
    this.#ctx = ctx;
    const all = new Map<string, TimerHandler>();
    for (const registry of handlers) {
      for (const [kind, handler] of Object.entries(registry)) {
        if (all.has(kind)) throw new Error(`two handlers for timers of kind "${kind}"`);
        all.set(kind, handler);
      }
    }
    this.#handlers = all;
    this.#loop = new WorkerLoop('timers', ctx, () => this.#tick(), POLL_MS);
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** Fires the timers due now, one claimed batch; returns how many fired. */
  async runOnce(): Promise<number> {
    const { store, clock } = this.#ctx;
    await this.#releaseStaleLeases();
    const now = clock.now();
    const lease = now + LEASE_MS;
    const claimed = await store.db.transaction().execute(async (trx) => {
      const due = store.lockForClaim(
        trx
          .selectFrom('timers')
          .select('id')
          .where('due_at', '<=', now)
          .where('locked_until', '<=', now)
          .orderBy('due_at')
          .orderBy('id')
          .limit(BATCH),
      );
      return trx
        .updateTable('timers')
        .set({ locked_until: lease })
        .where('id', 'in', due)
        .returning(['id', 'kind', 'due_at', 'payload', 'attempts'])
        .execute();
    });
    this.#claimed = claimed.length;
    if (claimed.length === 0) return 0;
    const timers = claimed
      .sort((a, b) => a.due_at - b.due_at || (a.id < b.id ? -1 : 1))
      .map((row): Timer => ({ ...row, payload: JSON.parse(row.payload) as unknown }));
    const { afters, fired } = await store.db.transaction().execute(async (trx) => {
      const done: AfterCommit[] = [];
      let count = 0;
      const fire = async (run: readonly Timer[]): Promise<void> => {
        const result = await this.#fire(trx, run, lease);
        if (result.error === undefined) {
          done.push(result.after);
          count += result.fired;
        } else if (run.length === 1) await this.#putBack(trx, run[0]!, lease, result.error);
        // One by one, a timer that fails alone does not hold back the others.
        else for (const timer of run) await fire([timer]);
      };
      for (const run of runsOfOneKind(timers)) await fire(run);
      return { afters: done, fired: count };
    });
    for (const after of afters) after();
    return fired;
  }

  /**
   * In a savepoint of `trx`, deletes the timers (those still held under `lease`) and runs their kind's handler
   * on them. Returns how many fired and what to do after the commit; on failure, rolls the savepoint back and
   * returns the error (0 fired).
   */
  async #fire(
    trx: Transaction<Database>,
    timers: readonly Timer[],
    lease: number,
  ): Promise<{ fired: number; after: AfterCommit; error?: unknown }> {
    const { clock, log, metrics } = this.#ctx;
    const kind = timers[0]!.kind;
    const handler = this.#handlers.get(kind);
    await sql`savepoint timer`.execute(trx);
    try {
      if (handler === undefined) throw new Error(`no handler for timers of kind "${kind}"`);
      const deleted = await trx
        .deleteFrom('timers')
        .where(
          'id',
          'in',
          timers.map((t) => t.id),
        )
        .where('locked_until', '=', lease)
        .returning('id')
        .execute();
      // The others were taken over by another node after our lease ran out: it fires them.
      const held = new Set(deleted.map((row) => row.id));
      const mine = timers.filter((t) => held.has(t.id));
      const after = mine.length === 0 ? undefined : await handler(trx, mine, clock.now());
      await sql`release savepoint timer`.execute(trx);
      return { fired: mine.length, after: after ?? (() => {}) };
    } catch (error) {
      await sql`rollback to savepoint timer`.execute(trx);
      await sql`release savepoint timer`.execute(trx);
      if (timers.length > 1) {
        log.warn(
          { err: error, kind, timers: timers.length },
          'timers failed together; firing them one by one',
        );
      } else {
        metrics.workerErrors.inc({ worker: 'timers' });
        log.error({ err: error, timer: timers[0]!.id, kind }, 'timer failed; it will be retried');
      }
      return { fired: 0, after: () => {}, error };
    }
  }

  /** Puts back a timer that failed, due again after a backoff that grows with its failures. */
  async #putBack(trx: Transaction<Database>, timer: Timer, lease: number, error: unknown): Promise<void> {
    const now = this.#ctx.clock.now();
    await trx
      .updateTable('timers')
      .set({
        attempts: timer.attempts + 1,
        last_error: String(error instanceof Error ? error.message : error).slice(0, 1000),
        due_at: now + Math.min(1_000 * 2 ** timer.attempts, MAX_BACKOFF_MS),
        locked_until: 0,
      })
      .where('id', '=', timer.id)
      .where('locked_until', '=', lease)
      .execute();
  }

  /** Counts timers overdue by more than a minute into `herald_timers_overdue`; returns the count. */
  async checkOverdue(): Promise<number> {
    const { store, clock, metrics } = this.#ctx;
    const now = clock.now();
    this.#checkedOverdue = now;
    const row = await store.db
      .selectFrom('timers')
      .select(sql<number>`count(*)`.as('n'))
      .where('due_at', '<', now - OVERDUE_MS)
      .executeTakeFirstOrThrow();
    metrics.timersOverdue.set(Number(row.n));
    return Number(row.n);
  }

  async #tick(): Promise<TickResult> {
    await this.runOnce();
    if (this.#ctx.clock.now() - this.#checkedOverdue >= OVERDUE_CHECK_MS) await this.checkOverdue();
    if (this.#claimed === BATCH) return 'busy';
    const now = this.#ctx.clock.now();
    // Timers another node holds are left to it; the loop's poll looks at them again when their lease ends.
    const next = await this.#ctx.store.db
      .selectFrom('timers')
      .select('due_at')
      .where('locked_until', '<=', now)
      .orderBy('due_at')
      .limit(1)
      .executeTakeFirst();
    // Due already: it came due between the claim and now (a sleep may end a little early), so look again
    // at once rather than after a poll interval.
    return next === undefined ? POLL_MS : Math.max(next.due_at - now, RECHECK_MS);
  }

  // As for events and deliveries (src/db/leases.ts): on SQLite, one process owns the database, so a lease
  // still held at start-up belongs to a process that died.
  async #releaseStaleLeases(): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#ctx.store.engine !== 'sqlite') return;
    await sql`update timers set locked_until = 0 where locked_until > 0`.execute(this.#ctx.store.db);
  }
}

/** The timers (in firing order) as runs of consecutive timers of the same kind. */
function runsOfOneKind(timers: readonly Timer[]): Timer[][] {
  const runs: Timer[][] = [];
  for (const timer of timers) {
    const last = runs.at(-1);
    if (last !== undefined && last[0]!.kind === timer.kind) last.push(timer);
    else runs.push([timer]);
  }
  return runs;
}
