import type { Db } from '../db/engine.ts';
import type { RuleRow } from '../db/tables.ts';
import type { SEVERITIES } from '../events/events.schema.ts';

export type Severity = (typeof SEVERITIES)[number];

/** Which events a rule applies to: all of the given conditions hold (a left-out one holds for every event). */
export interface RuleMatch {
  /** Type patterns (`case.*`); the event's type matches one of them. */
  types: string[];
  /** Source ids; the event came from one of them. */
  sources?: string[];
  severities?: Severity[];
}

/** Who a matching event goes to: the union of all of these. */
export interface RuleRecipients {
  users?: string[];
  groups?: string[];
  /** Paths into the event (`data.owner`, `data.approvers`, `subject`) holding user ids or lists of them. */
  from_data?: string[];
}

/** A channel, or a fallback chain tried in turn (`{fallback: ["push", "email"]}`). */
export type ChannelSpec = string | { fallback: string[] };

/** The key a channel spec is kept under on a recipient: `email`, or `push>email` for a chain. */
export function channelKey(spec: ChannelSpec): string {
  return typeof spec === 'string' ? spec : spec.fallback.join('>');
}

/** A routing rule, parsed; times in ms. */
export interface Rule {
  id: string;
  name: string | null;
  /** Lower runs first; ties go by id. */
  position: number;
  enabled: boolean;
  match: RuleMatch;
  recipients: RuleRecipients;
  channels: ChannelSpec[];
  created_at: number;
  updated_at: number;
}

function parseRule(row: RuleRow): Rule {
  return {
    id: row.id,
    name: row.name,
    position: Number(row.position),
    enabled: Number(row.enabled) === 1,
    match: JSON.parse(row.match) as RuleMatch,
    recipients: JSON.parse(row.recipients) as RuleRecipients,
    channels: JSON.parse(row.channels) as ChannelSpec[],
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

/** Creates or replaces a rule (keeping `created_at` of one that existed); returns whether it was created. */
export async function upsertRule(
  db: Db,
  rule: Omit<Rule, 'created_at' | 'updated_at'>,
  now: number,
): Promise<boolean> {
  const existed = await db.selectFrom('rules').select('id').where('id', '=', rule.id).executeTakeFirst();
  const row = {
    id: rule.id,
    name: rule.name,
    position: rule.position,
    enabled: rule.enabled ? 1 : 0,
    match: JSON.stringify(rule.match),
    recipients: JSON.stringify(rule.recipients),
    channels: JSON.stringify(rule.channels),
    updated_at: now,
  };
  await db
    .insertInto('rules')
    .values({ ...row, created_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
  return existed === undefined;
}

export async function findRule(db: Db, id: string): Promise<Rule | undefined> {
  const row = await db.selectFrom('rules').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : parseRule(row);
}

/** Rules in evaluation order (position, then id) after `after`; at most `limit`. */
export async function listRules(
  db: Db,
  page: { after: { position: number; id: string } | undefined; limit: number },
): Promise<Rule[]> {
  let query = db.selectFrom('rules').selectAll();
  const after = page.after;
  if (after !== undefined) {
    query = query.where((eb) =>
      eb.or([
        eb('position', '>', after.position),
        eb.and([eb('position', '=', after.position), eb('id', '>', after.id)]),
      ]),
    );
  }
  const rows = await query.orderBy('position').orderBy('id').limit(page.limit).execute();
  return rows.map(parseRule);
}

/** Every enabled rule in evaluation order (position, then id): what the router applies. */
export async function listEnabledRules(db: Db): Promise<Rule[]> {
  const rows = await db
    .selectFrom('rules')
    .selectAll()
    .where('enabled', '=', 1)
    .orderBy('position')
    .orderBy('id')
    .execute();
  return rows.map(parseRule);
}

/** Deletes a rule; returns whether it existed. */
export async function deleteRule(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('rules').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
