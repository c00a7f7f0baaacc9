import type { Kysely } from 'kysely';
import type { Engine } from '../engine.ts';

/**
 * Escalation and deadlines. `escalation_policies` are the named level lists; `escalations` keeps, per
 * event, the policy frozen when the event was routed, the SLA options (reminders, aging) and every step
 * taken, with its status. Rules and events gain their escalation options (`escalation`, JSON).
 */
export async function up(db: Kysely<unknown>, _engine: Engine): Promise<void> {
  const ms = 'bigint';

  await db.schema
    .createTable('escalation_policies')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('name', 'text')
    .addColumn('levels', 'text', (c) => c.notNull())
    .addColumn('repeat', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();

  await db.schema
    .createTable('escalations')
    .addColumn('event_id', 'text', (c) => c.primaryKey())
    .addColumn('policy_id', 'text')
    .addColumn('policy', 'text')
    .addColumn('options', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('steps', 'text', (c) => c.notNull())
    .addColumn('stopped_reason', 'text')
    .addColumn('stopped_at', ms)
    .addColumn('created_at', ms, (c) => c.notNull())
    .addColumn('updated_at', ms, (c) => c.notNull())
    .execute();
  await db.schema.createIndex('escalations_policy').on('escalations').column('policy_id').execute();

  await db.schema.alterTable('rules').addColumn('escalation', 'text').execute();
  await db.schema.alterTable('events').addColumn('escalation', 'text').execute();
}
