import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

/** Rules may declare the actions (and response policy) of the events they route, when the event names none. */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  await db.schema.alterTable('rules').addColumn('actions', 'text').execute();
}
