import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Noise control. `timers` are durable one-shot timers (a flush, later an escalation) claimed with a lease
 * and fired exactly once. `noise_buckets` collect what a group, a throttle window or a digest holds back
 * (`noise_held`, one row per event and recipient) until its timer flushes them into one notification; an
 * open bucket has `open_key` set, so each group, window or digest has one open bucket at a time.
 * `silences` and `inhibitions` suppress whole events (`noise_suppressed` keeps what was held and by what);
 * `inhibition_parents` are the open parent events. Notifications gain what deduplication needs, rules
 * their noise options, and users their quiet hours and digest preference (`noise_settings`).
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .createTable('timers')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('due_at', ms, (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('locked_until', ms, (c) => c.notNull().defaultTo(0))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('last_error', 'text')
    .addColumn('created_at', ms, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('timers_due').on('timers').columns(['due_at', 'id']).execute();

  await db.schema
    .createTable('silences')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('matchers', 'text', (c) => c.notNull())
    .addColumn('starts_at', ms, (c) => c.notNull())
    .addColumn('ends_at', ms, (c) => c.notNull())
    .addColumn('comment', 'text', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('silences_ends').on('silences').column('ends_at').execute();

  await db.schema
    .createTable('inhibitions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('parent', 'text', (c) => c.notNull())
    .addColumn('children', 'text', (c) => c.notNull())
    .addColumn('equal', 'text', (c) => c.notNull())
    .addColumn('expires_in', ms, (c) => c.notNull())
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('inhibition_parents')
    .addColumn('inhibition_id', 'text', (c) => c.notNull().references('inhibitions.id').onDelete('cascade'))
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('event_type', 'text', (c) => c.notNull())
    .addColumn('key', 'text', (c) => c.notNull())
    .addColumn('opened_at', ms, (c) => c.notNull())
    .addColumn('expires_at', ms, (c) => c.notNull())
    .addColumn('resolved_at', ms)
    .addColumn('resolved_by', 'text')
    .addPrimaryKeyConstraint('inhibition_parents_pk', ['inhibition_id', 'event_id'])
    .execute();
  await db.schema
    .createIndex('inhibition_parents_key')
    .on('inhibition_parents')
    .columns(['inhibition_id', 'key'])
    .execute();

  await db.schema
    .createTable('noise_suppressed')
    .addColumn('event_id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('by_id', 'text', (c) => c.notNull())
    .addColumn('recipients', 'integer', (c) => c.notNull())
    .addColumn('at', ms, (c) => c.notNull())
    .execute();
  await db.schema
    .createIndex('noise_suppressed_by')
    .on('noise_suppressed')
    .columns(['by_id', 'event_id'])
    .execute();

  await db.schema
    .createTable('noise_buckets')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('kind', 'text', (c) => c.notNull())
    .addColumn('open_key', 'text', (c) => c.unique())
    .addColumn('rule_id', 'text')
    .addColumn('user_id', 'text')
    .addColumn('label', 'text')
    .addColumn('count', 'integer', (c) => c.notNull())
    .addColumn('opened_at', ms, (c) => c.notNull())
    .addColumn('due_at', ms, (c) => c.notNull())
    .addColumn('flushes', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('closed_at', ms)
    .execute();

  await db.schema
    .createTable('noise_held')
    .addColumn('bucket_id', 'text', (c) => c.notNull().references('noise_buckets.id').onDelete('cascade'))
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('user_id', 'text', (c) => c.notNull())
    .addColumn('rule_id', 'text')
    .addColumn('chains', 'text', (c) => c.notNull())
    .addColumn('at', ms, (c) => c.notNull())
    .addColumn('released_at', ms)
    .addColumn('notification_id', 'text')
    .addPrimaryKeyConstraint('noise_held_pk', ['bucket_id', 'event_id', 'user_id'])
    .execute();
  await db.schema.createIndex('noise_held_event').on('noise_held').column('event_id').execute();

  await db.schema
    .createTable('noise_settings')
    .addColumn('user_id', 'text', (c) => c.primaryKey().references('users.id').onDelete('cascade'))
    .addColumn('quiet_hours', 'text')
    .addColumn('digest', 'text')
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();

  await db.schema.alterTable('notifications').addColumn('dedup_key', 'text').execute();
  await db.schema
    .alterTable('notifications')
    .addColumn('occurrences', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
  await db.schema.alterTable('notifications').addColumn('last_event_id', 'text').execute();
  await db.schema.alterTable('notifications').addColumn('data', 'text').execute();
  await db.schema
    .createIndex('notifications_dedup')
    .on('notifications')
    .columns(['dedup_key', 'user_id'])
    .where(sql.ref('dedup_key'), 'is not', null)
    .execute();

  await db.schema.alterTable('rules').addColumn('noise', 'text').execute();
}
