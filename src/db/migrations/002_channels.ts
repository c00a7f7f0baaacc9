import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Channels beyond the inbox: providers with failover and circuit state, devices for push, per-user channel
 * preferences (one-click unsubscribe), templates, and outbound endpoints that filter, transform, rate-limit,
 * keep order and trip a circuit. Deliveries gain the notification and user they serve and a `lane`: the unit of
 * concurrency and circuit breaking (an endpoint id, or a channel name for per-user channels).
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .createTable('providers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('config', 'text', (c) => c.notNull())
    .addColumn('priority', 'integer', (c) => c.notNull())
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('failures', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('failing_since', ms)
    .addColumn('paused_until', ms)
    .addColumn('last_error', 'text')
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('providers_channel').on('providers').columns(['channel', 'priority']).execute();

  await db.schema
    .createTable('devices')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('address', 'text', (c) => c.notNull())
    .addColumn('keys', 'text')
    .addColumn('name', 'text')
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('devices_address')
    .on('devices')
    .columns(['kind', 'address'])
    .unique()
    .execute();
  await db.schema.createIndex('devices_user').on('devices').column('user_id').execute();

  await db.schema
    .createTable('preferences')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('category', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('enabled', 'integer', (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .addPrimaryKeyConstraint('preferences_pk', ['user_id', 'category', 'channel'])
    .execute();

  await db.schema
    .createTable('templates')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('types', 'text', (c) => c.notNull())
    .addColumn('channel', 'text', (c) => c.notNull())
    .addColumn('locale', 'text', (c) => c.notNull())
    .addColumn('subject', 'text')
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('html', 'text')
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('settings')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('value', 'text', (c) => c.notNull())
    .execute();

  for (const [column, type] of [
    ['kind', 'text'],
    ['filter', 'text'],
    ['transform', 'text'],
    ['headers', 'text'],
    ['payload', 'text'],
    ['rate_limit', 'integer'],
    ['ordered', 'integer'],
    ['failures', 'integer'],
    ['failing_since', ms],
    ['paused_until', ms],
  ] as const) {
    await db.schema.alterTable('endpoints').addColumn(column, type).execute();
  }
  await sql`update endpoints set kind = 'webhook', payload = 'full', ordered = 0, failures = 0`.execute(db);

  for (const [column, type] of [
    ['lane', 'text'],
    ['notification_id', 'text'],
    ['user_id', 'text'],
    ['fallback', 'text'],
    ['provider_id', 'text'],
  ] as const) {
    await db.schema.alterTable('deliveries').addColumn(column, type).execute();
  }
  await sql`update deliveries set lane = endpoint_id`.execute(db);
  await db.schema
    .createIndex('deliveries_notification_channel')
    .on('deliveries')
    .columns(['notification_id', 'channel'])
    .unique()
    .execute();
  // The dead letter list. Partial, so SQLite never prefers it over the primary key when an update names the
  // pending status (an index on status would make it scan every pending delivery).
  await db.schema
    .createIndex('deliveries_dead')
    .on('deliveries')
    .column('id')
    .where(sql.ref('status'), '=', 'dead')
    .execute();

  await db.schema.alterTable('attempts').addColumn('provider_id', 'text').execute();
}
