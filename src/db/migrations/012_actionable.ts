import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Whether a notification offers its event's actions. One that reached its user only through a subscription of
 * their own keeps them informed, but the actions belong to the people the event was addressed or routed to;
 * and a summary of several events (a group, digest or throttle window) cannot answer for each of them.
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  await db.schema
    .alterTable('notifications')
    .addColumn('actionable', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
}
