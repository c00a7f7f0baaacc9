import type { Db } from '../db/engine.ts';
import type { RuleRow } from '../db/tables.ts';
import type { EscalationOptions } from '../escalation/options.ts';
import type { Action, ResponsePolicy } from '../events/events.schema.ts';

/** What a rule declares for the events it routes that carry no actions of their own. */
export interface RuleActions {
  actions: Action[];
  response_policy?: ResponsePolicy;
}

import type { SEVERITIES } from '../events/events.schema.ts';
import type { RuleNoise } from '../noise/options.ts';

export type Severity = (typeof SEVERITIES)[number];

/** Which events a rule applies to: all of the given conditions hold (a left-out one holds for every event). */
export interface RuleMatch {
  /** Type patterns (`case.*`); the event's type matches one of them. */
  types: string[];
  /** Source ids; the event came from one of them. */
  sources?: string[];
  severities?: Severity[];
  /** Subject patterns (`*` as in types); the event has a subject matching one of them. */
  subjects?: string[];
  /** A JSONata expression over the event as the API shows it; the rule applies when it is truthy. */
  condition?: string;
}

/** An attribute's wanted value: a literal, or a path into the event (`data.region`, `subject`). */
export type SegmentValue = string | number | boolean;

/**
 * A part of the directory: users holding any of `roles` (when given) whose attributes equal every value of
 * `attributes` (when given). A value that is a path is read from the event.
 */
export interface Segment {
  roles?: string[];
  attributes?: Record<string, SegmentValue>;
}

/** Who a matching event goes to: the union of all of these. */
export interface RuleRecipients {
  users?: string[];
  groups?: string[];
  /** Paths into the event (`data.owner`, `data.approvers`, `subject`) holding user ids, emails or lists of them. */
  from_data?: string[];
  segments?: Segment[];
  /** The manager of each user at a path (`data.owner`), or of each user the rule reaches (`recipients`). */
  managers_of?: string[];
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
  /** False (the default): when this rule matches, the rules after it are not tried. */
  continue: boolean;
  match: RuleMatch;
  recipients: RuleRecipients;
  channels: ChannelSpec[];
  /** Channels for events of a severity, instead of `channels`. */
  channels_by_severity?: Partial<Record<Severity, ChannelSpec[]>>;
  /** Grouping, throttling and digests for what this rule routes (see src/noise). */
  noise?: RuleNoise;
  /** Escalation policy, reminders and aging for what this rule routes (see src/escalation). */
  escalation?: EscalationOptions;
  /** Actions (and a response policy) for the events it routes that declare none. */
  actions?: RuleActions;
  created_at: number;
  updated_at: number;
}

/** The channels a rule uses for an event of `severity`. */
export function channelsFor(rule: Rule, severity: Severity): ChannelSpec[] {
  return rule.channels_by_severity?.[severity] ?? rule.channels;
}

function parseRule(row: RuleRow): Rule {
  const bySeverity = row.channels_by_severity;
  return {
    id: row.id,
    name: row.name,
    position: Number(row.position),
    enabled: Number(row.enabled) === 1,
    continue: Number(row.continue_matching) === 1,
    match: JSON.parse(row.match) as RuleMatch,
    recipients: JSON.parse(row.recipients) as RuleRecipients,
    channels: JSON.parse(row.channels) as ChannelSpec[],
    ...(bySeverity === null
      ? {}
      : { channels_by_severity: JSON.parse(bySeverity) as Rule['channels_by_severity'] }),
    ...(row.noise === null ? {} : { noise: JSON.parse(row.noise) as RuleNoise }),
    ...(row.escalation === null ? {} : { escalation: JSON.parse(row.escalation) as EscalationOptions }),
    ...(row.actions === null ? {} : { actions: JSON.parse(row.actions) as RuleActions }),
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
    continue_matching: rule.continue ? 1 : 0,
    match: JSON.stringify(rule.match),
    recipients: JSON.stringify(rule.recipients),
    channels: JSON.stringify(rule.channels),
    channels_by_severity:
      rule.channels_by_severity === undefined ? null : JSON.stringify(rule.channels_by_severity),
    noise: rule.noise !== undefined && Object.keys(rule.noise).length > 0 ? JSON.stringify(rule.noise) : null,
    escalation: rule.escalation === undefined ? null : JSON.stringify(rule.escalation),
    actions: rule.actions === undefined ? null : JSON.stringify(rule.actions),
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
