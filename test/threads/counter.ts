import { sql } from 'kysely';
import { openStore } from '../../src/db/engine.ts';

/**
 * Opens the SQLite file `path` as one of several threads (sharing `lock`) and increments the `inbox_seq`
 * counter `times` times: read, yield to the event loop, write, in one transaction each (a lost update would
 * show in the final count), alternating with increments outside any transaction. `firstInLine` as the HTTP
 * thread's store has it.
 */
export async function incrementTimes(
  path: string,
  lock: SharedArrayBuffer,
  times: number,
  firstInLine = false,
): Promise<void> {
  const store = openStore(path, { threadLock: lock, firstInLine });
  try {
    for (let i = 0; i < times; i++) {
      if (i % 2 === 0) {
        await store.db.transaction().execute(async (trx) => {
          const row = await sql<{
            value: number;
          }>`select value from counters where name = 'inbox_seq'`.execute(trx);
          await new Promise((resolve) => setTimeout(resolve, 1));
          await sql`update counters set value = ${row.rows[0]!.value + 1} where name = 'inbox_seq'`.execute(
            trx,
          );
        });
      } else {
        await sql`update counters set value = value + 1 where name = 'inbox_seq'`.execute(store.db);
      }
    }
  } finally {
    await store.close();
  }
}
