import { type Kysely, sql } from 'kysely';
import { type Migration, type MigrationProvider, Migrator } from 'kysely/migration';
import type { Engine } from './engine.ts';
import * as m001 from './migrations/001_initial.ts';
import type { Database } from './tables.ts';

interface EngineMigration {
  up(db: Kysely<unknown>, engine: Engine): Promise<void>;
}

// Forward-only and numbered; a released migration is never edited.
const MIGRATIONS: Record<string, EngineMigration> = {
  '001_initial': m001,
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

/** Applies every migration not yet applied; returns the names applied now. */
export async function migrateToLatest(db: Kysely<Database>, engine: Engine): Promise<string[]> {
  // On PostgreSQL, keep Kysely's bookkeeping tables in the schema Herald works in (its search_path), so
  // several Herald databases can live in one PostgreSQL database as schemas.
  const schema =
    engine === 'postgres'
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
      : undefined;
  const migrator = new Migrator({
    db,
    provider: new StaticProvider(engine),
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw new Error('Database migration failed', { cause: error });
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
