import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import type { Engine } from './engine.ts';
import * as m001 from './migrations/001_initial.ts';
import * as m002 from './migrations/002_channels.ts';
import * as m003 from './migrations/003_announcements.ts';
import * as m004 from './migrations/004_routing.ts';
import * as m005 from './migrations/005_noise.ts';
import * as m006 from './migrations/006_actions.ts';
import * as m007 from './migrations/007_escalation.ts';
import * as m008 from './migrations/008_queues.ts';
import * as m009 from './migrations/009_rule_actions.ts';
import * as m010 from './migrations/010_delivery_receipts.ts';
import * as m011 from './migrations/011_idempotency_index.ts';
import * as m012 from './migrations/012_actionable.ts';
import type { Database } from './tables.ts';

interface EngineMigration {
  up(db: Kysely<unknown>, engine: Engine): Promise<void>;
}

// Forward-only and numbered; a released migration is never edited.
const MIGRATIONS: Record<string, EngineMigration> = {
  '001_initial': m001,
  '002_channels': m002,
  '003_announcements': m003,
  '004_routing': m004,
  '005_noise': m005,
  '006_actions': m006,
  '007_escalation': m007,
  '008_queues': m008,
  '009_rule_actions': m009,
  '010_delivery_receipts': m010,
  '011_idempotency_index': m011,
  '012_actionable': m012,
};

class StaticProvider implements MigrationProvider {
  readonly #engine: Engine;
  constructor(engine: Engine) {
    this.#engine = engine;
  }
  async getMigrations(): Promise<Record<string, Migration>> {
    return Object.fromEntries(
      Object.entries(MIGRATIONS).map(([name, m]) => [
        name,
        { up: (db: Kysely<unknown>) => m.up(db, this.#engine) },
      ]),
    );
  }
}

/**
 * Held (as a PostgreSQL advisory lock) while migrating and while dropping a schema. Kysely's migrator looks
 * for its tables by reading the catalog of every schema, and that read fails if another schema is dropped
 * at the same moment (several Herald databases, or test runs, sharing one PostgreSQL). It also makes nodes
 * that start together migrate one after the other.
 */
export const SCHEMA_CHANGE_LOCK = 72_616_002;

/** Applies every migration not yet applied; returns the names applied now. */
export async function migrateToLatest(db: Kysely<Database>, engine: Engine): Promise<string[]> {
  if (engine === 'sqlite') return migrate(db, engine, undefined);
  // One connection for the lock and the migration, so the lock covers every statement.
  return db.connection().execute(async (connection) => {
    await sql`select pg_advisory_lock(${SCHEMA_CHANGE_LOCK})`.execute(connection);
    try {
      // Kysely's bookkeeping tables live in the schema Herald works in (its search_path), so several Herald
      // databases can share one PostgreSQL database as schemas.
      const current = await sql<{ schema: string }>`select current_schema() as schema`.execute(connection);
      return await migrate(connection, engine, current.rows[0]?.schema);
    } finally {
      await sql`select pg_advisory_unlock(${SCHEMA_CHANGE_LOCK})`.execute(connection);
    }
  });
}

async function migrate(db: Kysely<Database>, engine: Engine, schema: string | undefined): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new StaticProvider(engine),
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new Error('Database migration failed', { cause: error });
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
