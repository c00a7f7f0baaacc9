import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import type { SEVERITIES } from '../events/events.schema.ts';
import { matchesAnyType } from '../routing/patterns.ts';

type Severity = (typeof SEVERITIES)[number];

/** Which events a silence holds back: all the given conditions hold (at least one is given). */
export interface SilenceMatchers {
  /** Event type patterns. */
  types?: string[];
  sources?: string[];
  severities?: Severity[];
  /** The event's subject, exactly. */
  subject?: string;
}

export interface Silence {
  id: string;
  matchers: SilenceMatchers;
  starts_at: number;
  ends_at: number;
  comment: string;
  created_by: string;
  created_at: number;
  updated_at: number;
}

/** `pending` before it starts, `active` during its window, `expired` after. */
export type SilenceState = 'pending' | 'active' | 'expired';

export function silenceState(silence: Pick<Silence, 'starts_at' | 'ends_at'>, now: number): SilenceState {
  if (now < silence.starts_at) return 'pending';
  return now < silence.ends_at ? 'active' : 'expired';
}

/** Does the silence's matcher set cover `event`? (Its window is checked by the caller.) */
export function silenceMatches(matchers: SilenceMatchers, event: EventRow): boolean {
  if (matchers.types !== undefined && !matchesAnyType(matchers.types, event.type)) return false;
  if (matchers.sources !== undefined && !matchers.sources.includes(event.source_id)) return false;
  if (matchers.severities !== undefined && !matchers.severities.includes(event.severity)) return false;
  if (matchers.subject !== undefined && matchers.subject !== event.subject) return false;
  return true;
}

type SilenceRow = Omit<Silence, 'matchers'> & { matchers: string };

const parse = (row: SilenceRow): Silence => ({
  ...row,
  matchers: JSON.parse(row.matchers) as SilenceMatchers,
});

export async function insertSilence(db: Db, silence: Silence): Promise<void> {
  await db
    .insertInto('silences')
    .values({ ...silence, matchers: JSON.stringify(silence.matchers) })
    .execute();
}

export async function findSilence(db: Db, id: string): Promise<Silence | undefined> {
  const row = await db.selectFrom('silences').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : parse(row);
}

/** Silences newest first, optionally in one state; fetches `limit + 1` for paging. */
export async function listSilences(
  db: Db,
  filter: { state: SilenceState | undefined; before: string | undefined; limit: number; now: number },
): Promise<Silence[]> {
  let query = db.selectFrom('silences').selectAll();
  if (filter.state === 'pending') query = query.where('starts_at', '>', filter.now);
  if (filter.state === 'active') {
    query = query.where('starts_at', '<=', filter.now).where('ends_at', '>', filter.now);
  }
  if (filter.state === 'expired') query = query.where('ends_at', '<=', filter.now);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  const rows = await query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
  return rows.map(parse);
}

/** The silences in force at `now`: what routing checks each batch against. */
export async function activeSilences(db: Db, now: number): Promise<Silence[]> {
  const rows = await db
    .selectFrom('silences')
    .selectAll()
    .where('ends_at', '>', now)
    .where('starts_at', '<=', now)
    .orderBy('id')
    .execute();
  return rows.map(parse);
}

/** Ends a silence now (one not yet started never starts); it stays listed with what it held. */
export async function expireSilence(db: Db, id: string, now: number): Promise<Silence | undefined> {
  const current = await findSilence(db, id);
  if (current === undefined) return undefined;
  if (current.ends_at <= now) return current;
  const changed = { starts_at: Math.min(current.starts_at, now), ends_at: now, updated_at: now };
  await db.updateTable('silences').set(changed).where('id', '=', id).execute();
  return { ...current, ...changed };
}

/** The events a silence or a parent event held back, newest first, with how many there are in all. */
export async function suppressedBy(db: Db, byId: string, limit: number) {
  const [items, total] = await Promise.all([
    db
      .selectFrom('noise_suppressed')
      .innerJoin('events', 'events.id', 'noise_suppressed.event_id')
      .select([
        'events.id as event_id',
        'events.type',
        'events.source_id',
        'events.severity',
        'events.subject',
        'events.title',
        'noise_suppressed.recipients',
        'noise_suppressed.at',
      ])
      .where('noise_suppressed.by_id', '=', byId)
      .orderBy('noise_suppressed.event_id', 'desc')
      .limit(limit)
      .execute(),
    db
      .selectFrom('noise_suppressed')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('by_id', '=', byId)
      .executeTakeFirstOrThrow(),
  ]);
  return { total: Number(total.n), items };
}
