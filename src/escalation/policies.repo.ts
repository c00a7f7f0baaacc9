import type { Selectable } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { EscalationPoliciesTable } from '../db/tables.ts';
import { parseDuration } from '../noise/time.ts';

/** Whom a level notifies: the event's recipients again, their managers, groups, users. */
export interface LevelTargets {
  recipients?: boolean;
  managers?: boolean;
  groups?: string[];
  users?: string[];
}

/** One level of a policy, as given (`after` a duration such as `15m`). */
export interface Level {
  after: string;
  targets: LevelTargets;
  channels: string[];
}

/** An escalation policy. */
export interface Policy {
  id: string;
  name: string | null;
  levels: Level[];
  repeat: number;
  created_at: number;
  updated_at: number;
}

/** A level's delay in ms. */
export const afterMs = (level: Level): number => parseDuration(level.after) ?? 0;

type PolicyRow = Selectable<EscalationPoliciesTable>;

function parse(row: PolicyRow): Policy {
  return {
    id: row.id,
    name: row.name,
    levels: JSON.parse(row.levels) as Level[],
    repeat: Number(row.repeat),
    created_at: Number(row.created_at),
    updated_at: Number(row.updated_at),
  };
}

/** Creates or replaces a policy (keeping `created_at`); returns whether it was created. */
export async function upsertPolicy(
  db: Db,
  policy: Omit<Policy, 'created_at' | 'updated_at'>,
  now: number,
): Promise<boolean> {
  const existed = await db
    .selectFrom('escalation_policies')
    .select('id')
    .where('id', '=', policy.id)
    .executeTakeFirst();
  const row = {
    name: policy.name,
    levels: JSON.stringify(policy.levels),
    repeat: policy.repeat,
    updated_at: now,
  };
  await db
    .insertInto('escalation_policies')
    .values({ id: policy.id, ...row, created_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
  return existed === undefined;
}

export async function findPolicy(db: Db, id: string): Promise<Policy | undefined> {
  const row = await db.selectFrom('escalation_policies').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : parse(row);
}

/** Policies by id (those that exist). */
export async function findPolicies(db: Db, ids: readonly string[]): Promise<Map<string, Policy>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('escalation_policies')
    .selectAll()
    .where('id', 'in', [...new Set(ids)])
    .execute();
  return new Map(rows.map((r) => [r.id, parse(r)]));
}

/** Policies in id order, after `after`. */
export async function listPolicies(db: Db, page: { after: string | undefined; limit: number }) {
  let query = db
    .selectFrom('escalation_policies')
    .selectAll()
    .orderBy('id')
    .limit(page.limit + 1);
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  return (await query.execute()).map(parse);
}

export async function deletePolicy(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('escalation_policies').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
