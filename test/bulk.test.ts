import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Insertable, sql } from 'kysely';
import { insertInChunks, writeInChunks } from '../src/db/bulk.ts';
import type { Db } from '../src/db/engine.ts';
import { migrateToLatest } from '../src/db/migrate.ts';
import type { Database } from '../src/db/tables.ts';
import { ENGINES, openTestStore } from './helpers.ts';

type NotificationInsert = Insertable<Database['notifications']>;

const notification = (n: number, overrides: Partial<NotificationInsert> = {}): NotificationInsert => ({
  id: `ntf_${String(n).padStart(6, '0')}`,
  event_id: `evt_${n % 7}`,
  user_id: `u${n}`,
  source_id: 'src',
  type: 'order.shipped',
  severity: n % 2 === 0 ? 'info' : 'warning',
  title: `Title ${n}`,
  summary: n % 3 === 0 ? null : `Summary ${n}`,
  url: null,
  channels: '["inapp"]',
  state: 'unread',
  seq: n,
  created_seq: n,
  created_at: 1_000 + n,
  updated_at: 1_000 + n,
  read_at: null,
  archived_at: null,
  ...overrides,
});

const insert = (db: Db, rows: NotificationInsert[]) =>
  insertInChunks(db, rows, (chunk) =>
    db
      .insertInto('notifications')
      .values(chunk)
      .onConflict((oc) => oc.columns(['event_id', 'user_id']).doNothing()),
  );

const stored = (db: Db) => db.selectFrom('notifications').selectAll().orderBy('id').execute();

for (const engine of ENGINES) {
  test(`[${engine}] insertInChunks stores every row with its values, whatever the count`, async (t) => {
    const store = await openTestStore(t, engine);
    await migrateToLatest(store.db, store.engine);
    assert.equal(await insert(store.db, []), 0);
    let next = 0;
    // Below, at and past a full chunk, and a count that needs every smaller chunk size.
    for (const count of [1, 255, 256, 257, 1_023]) {
      const rows = Array.from({ length: count }, () => notification(next++));
      assert.equal(await insert(store.db, rows), count);
    }
    const rows = await stored(store.db);
    assert.equal(rows.length, next);
    for (const [n, row] of rows.entries()) {
      const expected = notification(n);
      for (const [column, value] of Object.entries(expected)) {
        const actual = (row as Record<string, unknown>)[column];
        assert.equal(actual === null ? null : String(actual), value === null ? null : String(value), column);
      }
    }
  });

  test(`[${engine}] insertInChunks skips and does not count rows that conflict`, async (t) => {
    const store = await openTestStore(t, engine);
    await migrateToLatest(store.db, store.engine);
    await insert(
      store.db,
      Array.from({ length: 300 }, (_, n) => notification(n)),
    );
    // Under new ids: the first 150 name (event, user) pairs already stored, the other 150 are new.
    const again = Array.from({ length: 300 }, (_, n) => notification(n + 150, { id: `ntf_again_${n}` }));
    assert.equal(await insert(store.db, again), 150);
    assert.equal((await stored(store.db)).length, 450);
  });

  test(`[${engine}] insertInChunks gives a column a row leaves out its default`, async (t) => {
    const store = await openTestStore(t, engine);
    await migrateToLatest(store.db, store.engine);
    const rows = [
      notification(0),
      notification(1, { occurrences: 3, dedup_key: 'k1' }),
      notification(2, { dedup_key: undefined }),
      notification(3, { occurrences: 2 }),
    ];
    assert.equal(await insert(store.db, rows), 4);
    const byId = new Map((await stored(store.db)).map((r) => [r.id, r]));
    assert.deepEqual(
      rows.map((r) => [Number(byId.get(r.id!)!.occurrences), byId.get(r.id!)!.dedup_key]),
      [
        [1, null],
        [3, 'k1'],
        [1, null],
        [2, null],
      ],
    );
  });

  test(`[${engine}] writeInChunks returns what the statements return and runs an update from a VALUES list`, async (t) => {
    const store = await openTestStore(t, engine);
    const { db } = store;
    await migrateToLatest(db, store.engine);
    await insert(
      db,
      Array.from({ length: 300 }, (_, n) => notification(n)),
    );
    // An insert with `returning`: only the 150 rows that did not conflict come back.
    const again = Array.from({ length: 300 }, (_, n) => notification(n + 150, { id: `ntf_again_${n}` }));
    const { rows: inserted } = await writeInChunks(db, again, (chunk) =>
      db
        .insertInto('notifications')
        .values(chunk)
        .onConflict((oc) => oc.columns(['event_id', 'user_id']).doNothing())
        .returning('id'),
    );
    assert.deepEqual(
      inserted.map((r) => r.id).sort(),
      again.slice(150).map((r) => r.id),
    );

    // An update whose VALUES list is made of the rows, bound in the order of each row's keys.
    const titles = Array.from({ length: 257 }, (_, n) => ({
      id: notification(n).id!,
      title: `Renamed ${n}`,
    }));
    const { affected } = await writeInChunks(db, titles, (chunk) => {
      const list = chunk.map((r) => sql`(${r.id}, ${r.title})`);
      const update = sql`update notifications set title = v.column2 from (values ${sql.join(list)}) as v
        where notifications.id = v.column1`;
      return { compile: () => update.compile(db) };
    });
    assert.equal(affected, 257);
    const rows = await stored(db);
    assert.equal(rows.filter((r) => r.title.startsWith('Renamed ')).length, 257);
    assert.equal(rows.find((r) => r.id === notification(256).id)!.title, 'Renamed 256');
    assert.equal(rows.find((r) => r.id === notification(257).id)!.title, 'Title 257');
  });
}
