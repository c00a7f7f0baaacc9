import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Only events published with an `Idempotency-Key` are in the index of idempotency keys. Most events have none,
 * and each of them cost the index an entry for (source, null) that no lookup ever reads. Uniqueness is the same:
 * both engines let any number of rows share a null key.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  await db.schema.dropIndex('events_source_idempotency').execute();
  await db.schema
    .createIndex('events_source_idempotency')
    .on('events')
    .columns(['source_id', 'idempotency_key'])
    .unique()
    .where(sql.ref('idempotency_key'), 'is not', null)
    .execute();
}
