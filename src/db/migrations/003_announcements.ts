import { type Kysely, sql } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Announcements: a message to a segment of the directory, published at a time and withdrawn at another.
 * `due_at` is when the publisher next has something to do with one (publish, fan out the next chunk,
 * expire, withdraw); `cursor` is the last user id a fan-out or withdrawal has handled, so either resumes
 * where it stopped.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .createTable('announcements')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('event_id', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('audience', 'text', (c) => c.notNull())
    .addColumn('title', 'text', (c) => c.notNull())
    .addColumn('body', 'text', (c) => c.notNull())
    .addColumn('url', 'text')
    .addColumn('severity', 'text', (c) => c.notNull())
    .addColumn('publish_at', ms, (c) => c.notNull())
    .addColumn('expires_at', ms)
    .addColumn('total', 'integer', (c) => c.notNull())
    .addColumn('delivered', 'integer', (c) => c.notNull())
    .addColumn('removed', 'integer', (c) => c.notNull())
    .addColumn('cursor', 'text')
    .addColumn('due_at', ms)
    .addColumn('locked_until', ms, (c) => c.notNull())
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .addColumn('published_at', ms)
    .addColumn('ended_at', ms)
    .execute();
  // The publisher's queue: only announcements with work ahead of them are in this index.
  await db.schema
    .createIndex('announcements_due')
    .on('announcements')
    .column('due_at')
    .where(sql.ref('due_at'), 'is not', null)
    .execute();
}
