import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Delivery receipts. Each attempt keeps the provider's id for the message it accepted (Twilio's `SM…` sid), so a
 * status callback naming that id finds its delivery; a delivery the provider reports handed over to the device
 * gets `delivered_at`.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema.alterTable('attempts').addColumn('provider_ref', 'text').execute();
  await db.schema.alterTable('deliveries').addColumn('delivered_at', ms).execute();
  // Only accepted attempts carry an id: the index leaves out the many that do not.
  await db.schema
    .createIndex('attempts_provider_ref')
    .on('attempts')
    .column('provider_ref')
    .where(sql.ref('provider_ref'), 'is not', null)
    .execute();
}
