import { sql } from 'kysely';
import type { Store } from './engine.ts';

/**
 * Releases every lease on queued work. Only for SQLite: an embedded database has one Herald process, so at
 * start-up any lease still held belongs to a process that died, and waiting for it to run out would only
 * delay the work it had claimed. On PostgreSQL other live nodes may hold leases; there they expire instead.
 */
export async function releaseStaleLeases(store: Store): Promise<void> {
  if (store.engine !== 'sqlite') return;
  await sql`update events set locked_until = 0 where status = 'pending' and locked_until > 0`.execute(
    store.db,
  );
  await sql`update deliveries set locked_until = 0 where status = 'pending' and locked_until > 0`.execute(
    store.db,
  );
}
