import { randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Actions and write-back. `responses` holds one row per notification a recipient acted on (its write-back
 * delivery named by `delivery_id`). Events gain their response policy, an own callback URL and how they were
 * closed (`resolution`: responded, acknowledged, resolved, cancelled); notifications the response shown to
 * everyone and who handled them; sources the secret their write-backs are signed with.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .createTable('responses')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('notification_id', 'text', (c) => c.notNull().unique())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('comment', 'text')
    .addColumn('responder', 'text', (c) => c.notNull())
    .addColumn('via', 'text', (c) => c.notNull())
    .addColumn('at', ms, (c) => c.notNull())
    .addColumn('delivery_id', 'text')
    .execute();
  await db.schema.createIndex('responses_event').on('responses').columns(['event_id', 'id']).execute();
  await db.schema.createIndex('responses_delivery').on('responses').column('delivery_id').execute();

  for (const column of ['response_policy', 'callback_url', 'resolution', 'resolved_by']) {
    await db.schema.alterTable('events').addColumn(column, 'text').execute();
  }
  await db.schema.alterTable('events').addColumn('resolved_at', ms).execute();
  await db.schema
    .createIndex('events_dedup')
    .on('events')
    .columns(['source_id', 'dedup_key'])
    .where(sql.ref('dedup_key'), 'is not', null)
    .execute();

  for (const column of ['response', 'resolved_by']) {
    await db.schema.alterTable('notifications').addColumn(column, 'text').execute();
  }
  await db.schema.alterTable('notifications').addColumn('resolved_at', ms).execute();

  await db.schema.alterTable('sources').addColumn('callback_secret', 'text').execute();
  const sources = await sql<{ id: string }>`select id from sources`.execute(db);
  for (const { id } of sources.rows) {
    const secret = `whsec_${randomBytes(32).toString('base64')}`;
    await sql`update sources set callback_secret = ${secret} where id = ${id}`.execute(db);
  }

  // Write-backs of one event go out one at a time in creation order: the claim looks for an older pending
  // one in the same lane, and this index answers that.
  await sql`create index deliveries_callback_lane on deliveries (lane, id)
    where status = 'pending' and channel = 'callback'`.execute(db);
}
