import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { sql } from 'kysely';
import { openStore } from '../src/db/engine.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import { ThreadWriteLock, threadLockMemory } from '../src/db/sqlite-shared.ts';
import { waitFor } from './helpers.ts';
import { incrementTimes } from './threads/counter.ts';

/* Several threads of one process on one SQLite file (src/db/sqlite-shared.ts), as `herald serve` runs. */

function tempDatabase(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'herald-threads-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'herald.db');
}

test('[sqlite] threads take turns writing: no busy errors, no lost updates', async (t) => {
  const path = tempDatabase(t);
  const setup = openStore(path);
  await migrateToLatest(setup.db, setup.engine);
  const before = await sql<{ value: number }>`select value from counters where name = 'inbox_seq'`.execute(
    setup.db,
  );
  await setup.close();

  const lock = threadLockMemory();
  const times = 100;
  const threads = [1, 2].map(
    () =>
      new Worker(new URL('./threads/counter.worker.ts', import.meta.url), {
        workerData: { path, lock, times },
      }),
  );
  const finished = threads.map(
    (worker) =>
      new Promise<void>((resolve, reject) => {
        worker.once('error', reject);
        worker.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`exit ${code}`))));
      }),
  );
  // This thread goes first, as the HTTP thread does: precedence must never let two writers in at once.
  await Promise.all([incrementTimes(path, lock, times, true), ...finished]);

  const check = openStore(path);
  t.after(() => check.close());
  const after = await sql<{ value: number }>`select value from counters where name = 'inbox_seq'`.execute(
    check.db,
  );
  assert.equal(after.rows[0]!.value - before.rows[0]!.value, 3 * times);
});

test('[sqlite] wake-ups published in one thread reach the same database in another, and only it', async (t) => {
  const path = tempDatabase(t);
  const other = tempDatabase(t);
  const lock = threadLockMemory();
  const here = openStore(path, { threadLock: lock });
  const unrelated = openStore(other, { threadLock: threadLockMemory() });
  t.after(async () => {
    await here.close();
    await unrelated.close();
  });
  const heard: string[] = [];
  const strays: string[] = [];
  here.notifier.subscribe('inbox', (payload) => heard.push(payload));
  unrelated.notifier.subscribe('inbox', (payload) => strays.push(payload));

  const worker = new Worker(new URL('./threads/publish.worker.ts', import.meta.url), {
    workerData: { path, lock },
  });
  await new Promise((resolve) => worker.once('exit', resolve));
  await waitFor(() => heard.length === 2 || undefined, 5_000);
  assert.deepEqual(heard, ['u1,u2', 'u3']);
  assert.deepEqual(strays, []);
});

test('[sqlite] with threads sharing the file, commits leave checkpoints to the checkpointer thread', async (t) => {
  const path = tempDatabase(t);
  const setup = openStore(path);
  await migrateToLatest(setup.db, setup.engine);
  await setup.close();
  const lock = threadLockMemory();
  const writer = openStore(path, { threadLock: lock });
  t.after(() => writer.close());
  const pad = 'x'.repeat(2_000);
  // About 6 MB: SQLite's own default would have checkpointed during these commits (past 1,000 pages, 4 MB).
  for (let batch = 0; batch < 30; batch++) {
    await writer.db.transaction().execute(async (trx) => {
      for (let i = 0; i < 100; i++) {
        await trx
          .insertInto('audit_log')
          .values({
            at: 0,
            actor: 'system',
            action: 'test.padded',
            subject_type: 'test',
            subject_id: `${batch}`,
            data: pad,
          })
          .execute();
      }
    });
  }
  const fileSize = () => statSync(path).size;
  assert.ok(statSync(`${path}-wal`).size > 5_000_000, 'the WAL holds what was written');
  assert.ok(fileSize() < 1_000_000, `no commit copied the WAL back into the file (${fileSize()} bytes)`);

  const checkpointer = openStore(path, { threadLock: lock, checkpointer: true });
  t.after(() => checkpointer.close());
  await waitFor(() => fileSize() > 5_000_000 || undefined, 5_000);
});

test('the write lock: a first-in-line waiter goes before background waiters, who still get their turn', async () => {
  const memory = threadLockMemory();
  const first = new ThreadWriteLock(memory, { first: true });
  const background = new ThreadWriteLock(memory);
  // Deferring for as long as the test may take, so only precedence decides who goes next.
  const other = new ThreadWriteLock(memory, { maxDeferMs: 60_000 });
  const order: string[] = [];

  await background.acquire();
  const turn = (lock: ThreadWriteLock, name: string) =>
    lock.acquire().then(() => {
      order.push(name);
      lock.release();
    });
  const waiting = [turn(other, 'background'), turn(first, 'first')];
  await new Promise((resolve) => setTimeout(resolve, 5));
  background.release();
  await Promise.all(waiting);
  assert.deepEqual(order, ['first', 'background'], 'the request thread went first, though it came second');

  // Requests keep coming, each waiting before the last is done: the background waiter still gets a turn
  // long before they stop.
  const requests = [
    new ThreadWriteLock(memory, { first: true }),
    new ThreadWriteLock(memory, { first: true }),
  ];
  let served = 0;
  let backgroundAfter: number | undefined;
  const stream = requests.map(async (lock) => {
    while (served < 200 && backgroundAfter === undefined) {
      await lock.acquire();
      served++;
      await new Promise((resolve) => setTimeout(resolve, 1));
      lock.release();
    }
  });
  await new Promise((resolve) => setTimeout(resolve, 5));
  await background.acquire();
  backgroundAfter = served;
  background.release();
  await Promise.all(stream);
  assert.ok(backgroundAfter < 200, `the background writer waited for ${backgroundAfter} request turns`);
});
