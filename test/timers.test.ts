import assert from 'node:assert/strict';
import { test } from 'node:test';
import { appendAudit } from '../src/audit/audit.repo.ts';
import { ManualClock } from '../src/clock.ts';
import { scheduleTimers, type TimerHandler, TimerWorker } from '../src/noise/timers.ts';
import { ENGINES, startHerald } from './helpers.ts';

for (const engine of ENGINES) {
  test(`[${engine}] timers due together go to their handler at once; when that fails, one by one: a failing one rolls back alone and is retried later`, async (t) => {
    const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'));
    const h = await startHerald(t, engine, { workers: false, clock });
    let failing = true;
    const calls: string[][] = [];
    const handler: TimerHandler = async (trx, timers, now) => {
      calls.push(timers.map((timer) => timer.id));
      for (const timer of timers) {
        await appendAudit(trx, {
          at: now,
          actor: 'system',
          action: 'test.timer_fired',
          subject_type: 'timer',
          subject_id: timer.id,
          data: null,
        });
        if (timer.id === 'flaky' && failing) throw new Error('the flaky timer fails once');
      }
      return undefined;
    };
    const worker = new TimerWorker(h.deps, { 'test.step': handler });
    const now = clock.now();
    await scheduleTimers(
      h.store.db,
      ['a', 'flaky', 'z'].map((id) => ({ id, kind: 'test.step', due_at: now, payload: null })),
      now,
    );
    assert.equal(await worker.runOnce(), 2);
    assert.deepEqual(calls, [['a', 'flaky', 'z'], ['a'], ['flaky'], ['z']], 'together, then one by one');
    const fired = async () =>
      (
        await h.store.db
          .selectFrom('audit_log')
          .select('subject_id')
          .where('action', '=', 'test.timer_fired')
          .orderBy('subject_id')
          .execute()
      ).map((r) => r.subject_id);
    assert.deepEqual(await fired(), ['a', 'z']);
    const left = await h.store.db.selectFrom('timers').selectAll().execute();
    assert.equal(left.length, 1);
    assert.equal(left[0]!.id, 'flaky');
    assert.equal(Number(left[0]!.attempts), 1);
    assert.equal(left[0]!.last_error, 'the flaky timer fails once');
    assert.ok(Number(left[0]!.due_at) > now, 'it backs off');

    failing = false;
    assert.equal(await worker.runOnce(), 0, 'not due again yet');
    clock.advance(1_000);
    assert.equal(await worker.runOnce(), 1);
    // The failed call's effects were rolled back: `a` was recorded once.
    assert.deepEqual(await fired(), ['a', 'flaky', 'z']);
    assert.deepEqual(await h.store.db.selectFrom('timers').select('id').execute(), []);
  });
}
