import type { Db } from '../db/engine.ts';
import type { ProviderRow, ProvidersTable } from '../db/tables.ts';

export async function findProvider(db: Db, id: string): Promise<ProviderRow | undefined> {
  return db.selectFrom('providers').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Providers in failover order (channel, priority, id), after `after` by id when paging. */
export async function listProviders(
  db: Db,
  page: { channel: string | undefined; after: string | undefined; limit: number },
): Promise<ProviderRow[]> {
  let query = db.selectFrom('providers').selectAll();
  if (page.channel !== undefined) query = query.where('channel', '=', page.channel as ProviderRow['channel']);
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  return query.orderBy('id').limit(page.limit).execute();
}

export async function upsertProvider(db: Db, row: ProviderRow): Promise<ProviderRow> {
  const { id, created_at, ...rest } = row;
  return db
    .insertInto('providers')
    .values(row)
    .onConflict((oc) => oc.column('id').doUpdateSet(rest satisfies Partial<ProvidersTable>))
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function deleteProvider(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('providers').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
