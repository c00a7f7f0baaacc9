import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sql } from 'kysely';
import { migrateToLatest } from '../src/db/migrate.ts';
import { ENGINES, openTestStore } from './helpers.ts';

test('[sqlite] durable transactions commit with synchronous=full; everything else runs with normal', async (t) => {
  const store = await openTestStore(t, 'sqlite');
  const level = async (db: Parameters<ReturnType<typeof sql>['execute']>[0]) =>
    (await sql<{ synchronous: number }>`pragma synchronous`.execute(db)).rows[0]!.synchronous;
  assert.equal(await level(store.db), 1);
  const inside = await store.transactDurably((trx) => level(trx));
  assert.equal(inside, 2);
  assert.equal(await level(store.db), 1);
});

for (const engine of ENGINES) {
  test(`[${engine}] migrations apply once and a second run has nothing to do`, async (t) => {
    const store = await openTestStore(t, engine);
    assert.deepEqual(await migrateToLatest(store.db, store.engine), [
      '001_initial',
      '002_channels',
      '003_announcements',
      '004_routing',
      '005_noise',
      '006_actions',
      '007_escalation',
      '008_queues',
      '009_rule_actions',
      '010_delivery_receipts',
      '011_idempotency_index',
      '012_actionable',
    ]);
    assert.deepEqual(await migrateToLatest(store.db, store.engine), []);
  });

  test(`[${engine}] inbox sequence numbers are handed out consecutively, without reuse`, async (t) => {
    const store = await openTestStore(t, engine);
    await migrateToLatest(store.db, store.engine);
    const first = await store.db.transaction().execute((trx) => store.allocateSeq(trx, 5));
    const second = await store.db.transaction().execute((trx) => store.allocateSeq(trx, 3));
    assert.equal(second, first + 5);
  });

  test(`[${engine}] a rolled-back durable transaction leaves nothing behind`, async (t) => {
    const store = await openTestStore(t, engine);
    await migrateToLatest(store.db, store.engine);
    await assert.rejects(
      store.transactDurably(async (trx) => {
        await trx
          .insertInto('sources')
          .values({ id: 's', name: 'S', callback_url: null, created_at: 1, updated_at: 1 })
          .execute();
        throw new Error('abort');
      }),
      /abort/,
    );
    assert.equal((await store.db.selectFrom('sources').selectAll().execute()).length, 0);
  });
}
