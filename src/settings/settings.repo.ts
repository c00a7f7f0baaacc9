import type { Db } from '../db/engine.ts';

/**
 * Returns the setting `name`, creating it with `create()` the first time. Concurrent first calls (several
 * nodes starting together) agree: the first insert wins and every caller reads the stored value back.
 */
export async function getOrCreateSetting(db: Db, name: string, create: () => string): Promise<string> {
  const found = await db.selectFrom('settings').select('value').where('name', '=', name).executeTakeFirst();
  if (found !== undefined) return found.value;
  await db
    .insertInto('settings')
    .values({ name, value: create() })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute();
  const stored = await db
    .selectFrom('settings')
    .select('value')
    .where('name', '=', name)
    .executeTakeFirstOrThrow();
  return stored.value;
}
