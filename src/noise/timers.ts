import { sql, type Transaction } from 'kysely';
import type { Context } from '../context.ts';
import type { Db } from '../db/engine.ts';
import type { Database } from '../db/tables.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';

/*
 * Durable one-shot timers. A timer is a row (`timers`): whoever schedules it does so in the transaction that
 * makes it necessary, so it exists exactly when that change committed. Firing claims due timers with a lease,
 * then fires the claimed batch in one transaction, each timer in a savepoint of its own that deletes the row
 * and runs its handler: the handler's effects and the timer's end commit together, so a timer fires exactly
 * once, one that fails rolls back alone, and a timer still in the table when a process restarts fires as soon
 * as it is due again. One commit per batch rather than per timer: thousands of timers due in the same second
 * (escalations sharing a deadline) fire within it.
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

/** Fires timers of one kind inside `trx`; throwing rolls its effects back and retries the timer later. */
export type TimerHandler = (
  trx: Transaction<Database>,
  timer: Timer,
  now: number,
) => Promise<AfterCommit | undefined>;

/** A timer to schedule; `id` makes scheduling idempotent (a second timer with the same id is ignored). */
export interface NewTimer {
  id: string;
  kind: string;
  due_at: number;
  payload: unknown;
}

/** Schedules timers in the caller's transaction; ids already scheduled are left as they are. */
export async function scheduleTimers(db: Db, timers: readonly NewTimer[], now: number): Promise<void> {
  for (let i = 0; i < timers.length; i += 500) {
    await db
      .insertInto('timers')
      .values(
        timers.slice(i, i + 500).map((t) => ({
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
    const afters = await store.db.transaction().execute(async (trx) => {
      const done: AfterCommit[] = [];
      for (const timer of timers) {
        const after = await this.#fire(trx, timer, lease);
        if (after !== null) done.push(after);
      }
      return done;
    });
    for (const after of afters) after();
    return afters.length;
  }

  /**
   * Deletes the timer and runs its handler in a savepoint of `trx`; on failure rolls that back and puts the
   * timer back with a delay. Returns what to do after the commit, or null when it did not fire.
   */
  async #fire(trx: Transaction<Database>, timer: Timer, lease: number): Promise<AfterCommit | null> {
    const { clock, log, metrics } = this.#ctx;
    const handler = this.#handlers.get(timer.kind);
    await sql`savepoint timer`.execute(trx);
    try {
      if (handler === undefined) throw new Error(`no handler for timers of kind "${timer.kind}"`);
      const mine = await trx
        .deleteFrom('timers')
        .where('id', '=', timer.id)
        .where('locked_until', '=', lease)
        .returning('id')
        .executeTakeFirst();
      // Another node took it over after our lease ran out and has fired it, or is firing it.
      const after = mine === undefined ? null : ((await handler(trx, timer, clock.now())) ?? (() => {}));
      await sql`release savepoint timer`.execute(trx);
      return after;
    } catch (error) {
      await sql`rollback to savepoint timer`.execute(trx);
      await sql`release savepoint timer`.execute(trx);
      metrics.workerErrors.inc({ worker: 'timers' });
      log.error({ err: error, timer: timer.id, kind: timer.kind }, 'timer failed; it will be retried');
      const now = clock.now();
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
      return null;
    }
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
