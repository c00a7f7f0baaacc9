import type { Db } from '../db/engine.ts';
import type { EndpointRow, EndpointsTable } from '../db/tables.ts';

export async function findEndpoint(db: Db, id: string): Promise<EndpointRow | undefined> {
  return db.selectFrom('endpoints').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The endpoints with these ids (missing ones are left out). */
export async function findEndpoints(db: Db, ids: readonly string[]): Promise<EndpointRow[]> {
  if (ids.length === 0) return [];
  return db
    .selectFrom('endpoints')
    .selectAll()
    .where('id', 'in', [...ids])
    .execute();
}

/** Endpoints in id order after `after`; at most `limit` rows. */
export async function listEndpoints(
  db: Db,
  page: { after: string | undefined; limit: number },
): Promise<EndpointRow[]> {
  let query = db.selectFrom('endpoints').selectAll();
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  return query.orderBy('id').limit(page.limit).execute();
}

export async function insertEndpoint(db: Db, row: EndpointRow): Promise<EndpointRow> {
  return db.insertInto('endpoints').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function updateEndpoint(
  db: Db,
  id: string,
  patch: Partial<Omit<EndpointsTable, 'id' | 'created_at'>> & { updated_at: number },
): Promise<EndpointRow | undefined> {
  return db.updateTable('endpoints').set(patch).where('id', '=', id).returningAll().executeTakeFirst();
}

/** Disables an enabled endpoint; returns whether it was enabled (so the caller audits only real changes). */
export async function disableEndpoint(db: Db, id: string, reason: string, now: number): Promise<boolean> {
  const result = await db
    .updateTable('endpoints')
    .set({ status: 'disabled', disabled_reason: reason, updated_at: now })
    .where('id', '=', id)
    .where('status', '=', 'enabled')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) > 0;
}

/** Deletes an endpoint; returns whether it existed. */
export async function deleteEndpoint(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('endpoints').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
