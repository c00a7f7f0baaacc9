import type { Db } from '../db/engine.ts';
import type { SourceRow } from '../db/tables.ts';

/** Inserts a source; returns undefined when the id is taken (no error, so callers answer 409). */
export async function insertSource(db: Db, row: SourceRow): Promise<SourceRow | undefined> {
  return db
    .insertInto('sources')
    .values(row)
    .onConflict((oc) => oc.column('id').doNothing())
    .returningAll()
    .executeTakeFirst();
}

export async function findSource(db: Db, id: string): Promise<SourceRow | undefined> {
  return db.selectFrom('sources').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Sources in id order after `after`; at most `limit` rows. */
export async function listSources(
  db: Db,
  page: { after: string | undefined; limit: number },
): Promise<SourceRow[]> {
  let query = db.selectFrom('sources').selectAll();
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  return query.orderBy('id').limit(page.limit).execute();
}

/** Applies a change; returns the updated source, or undefined when there is none with this id. */
export async function updateSource(
  db: Db,
  id: string,
  patch: { name?: string; callback_url?: string | null; updated_at: number },
): Promise<SourceRow | undefined> {
  return db.updateTable('sources').set(patch).where('id', '=', id).returningAll().executeTakeFirst();
}

/** Deletes a source; returns whether it existed. */
export async function deleteSource(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('sources').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
