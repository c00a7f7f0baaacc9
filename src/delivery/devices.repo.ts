import type { Db } from '../db/engine.ts';
import type { DeviceRow } from '../db/tables.ts';

export async function listDevices(db: Db, userId: string): Promise<DeviceRow[]> {
  return db.selectFrom('devices').selectAll().where('user_id', '=', userId).orderBy('id').execute();
}

/**
 * Registers a device; the same address registered again (a browser renewing its subscription, an app
 * reinstalled by another user) moves to this user and keeps its id.
 */
export async function upsertDevice(db: Db, row: DeviceRow): Promise<DeviceRow> {
  return db
    .insertInto('devices')
    .values(row)
    .onConflict((oc) =>
      oc.columns(['kind', 'address']).doUpdateSet({
        user_id: row.user_id,
        keys: row.keys,
        name: row.name,
        updated_at: row.updated_at,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Deletes a user's device; returns whether it existed. */
export async function deleteDevice(db: Db, userId: string, id: string): Promise<boolean> {
  const result = await db
    .deleteFrom('devices')
    .where('id', '=', id)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Deletes devices a push service reported gone. */
export async function deleteDevices(db: Db, ids: readonly string[]): Promise<void> {
  if (ids.length > 0)
    await db
      .deleteFrom('devices')
      .where('id', 'in', [...ids])
      .execute();
}
