import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Shared queues. A group with `queue` set takes one shared item per event that routing sends to it
 * (`queue_items`, unique per event and group) instead of a notification per member; any member can take it.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .alterTable('groups')
    .addColumn('queue', 'integer', (c) => c.notNull().defaultTo(0))
    .execute();

  await db.schema
    .createTable('queue_items')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('group_id', 'text', (c) => c.notNull().references('groups.id').onDelete('cascade'))
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('summary', 'text')
    .addColumn('url', 'text')
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('taken_by', 'text')
    .addColumn('taken_at', ms)
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('queue_items_event_group')
    .on('queue_items')
    .columns(['event_id', 'group_id'])
    .unique()
    .execute();
  await db.schema.createIndex('queue_items_group').on('queue_items').columns(['group_id', 'id']).execute();
  await db.schema
    .createIndex('queue_items_group_state')
    .on('queue_items')
    .columns(['group_id', 'state', 'id'])
    .execute();
}
