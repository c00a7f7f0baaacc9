import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import type { SEVERITIES } from '../events/events.schema.ts';
import { matchesAnyType } from '../routing/patterns.ts';

type Severity = (typeof SEVERITIES)[number];

import { keyValue } from './options.ts';

/** Which events an inhibition side applies to. */
export interface EventMatcher {
  types: string[];
  sources?: string[];
  severities?: Severity[];
}

/**
 * While a parent event (matching `parent`) is open, child events (matching `children`) with the same values at
 * every `equal` path notify nobody and are attached to the parent.
 */
export interface Inhibition {
  id: string;
  name: string | null;
  parent: EventMatcher;
  children: EventMatcher;
  equal: string[];
  /** How long a parent stays open without being resolved, in ms. */
  expires_in: number;
  created_at: number;
  updated_at: number;
}

/** An open (or once open) parent event. */
export interface Parent {
  inhibition_id: string;
  event_id: string;
  event_type: string;
  key: string;
  opened_at: number;
  expires_at: number;
  resolved_at: number | null;
  resolved_by: string | null;
}

export function eventMatches(matcher: EventMatcher, event: EventRow): boolean {
  if (!matchesAnyType(matcher.types, event.type)) return false;
  if (matcher.sources !== undefined && !matcher.sources.includes(event.source_id)) return false;
  if (matcher.severities !== undefined && !matcher.severities.includes(event.severity)) return false;
  return true;
}

/** The values at the inhibition's `equal` paths, as the key parents and children are matched by. */
export function inhibitionKey(inhibition: Inhibition, event: EventRow, data: unknown): string {
  return JSON.stringify(inhibition.equal.map((path) => keyValue(event, data, path)));
}

/**
 * Whether `event` resolves parents of type `parentType` rather than opening one: it is of type
 * `<parent type>.resolved`, or of the parent type itself with `data.status` "resolved".
 */
export function resolvedType(event: EventRow, data: unknown): string | undefined {
  if (event.type.endsWith('.resolved')) return event.type.slice(0, -'.resolved'.length);
  const status =
    data !== null && typeof data === 'object' ? (data as Record<string, unknown>)['status'] : undefined;
  return status === 'resolved' ? event.type : undefined;
}

type InhibitionRow = {
  id: string;
  name: string | null;
  parent: string;
  children: string;
  equal: string;
  expires_in: number;
  created_at: number;
  updated_at: number;
};

const parse = (row: InhibitionRow): Inhibition => ({
  ...row,
  expires_in: Number(row.expires_in),
  parent: JSON.parse(row.parent) as EventMatcher,
  children: JSON.parse(row.children) as EventMatcher,
  equal: JSON.parse(row.equal) as string[],
});

export async function insertInhibition(db: Db, inhibition: Inhibition): Promise<void> {
  await db
    .insertInto('inhibitions')
    .values({
      ...inhibition,
      parent: JSON.stringify(inhibition.parent),
      children: JSON.stringify(inhibition.children),
      equal: JSON.stringify(inhibition.equal),
    })
    .execute();
}

export async function findInhibition(db: Db, id: string): Promise<Inhibition | undefined> {
  const row = await db.selectFrom('inhibitions').selectAll().where('id', '=', id).executeTakeFirst();
  return row === undefined ? undefined : parse(row);
}

/** Inhibitions newest first, after the cursor; fetches `limit + 1` for paging. */
export async function listInhibitions(
  db: Db,
  before: string | undefined,
  limit: number,
): Promise<Inhibition[]> {
  let query = db.selectFrom('inhibitions').selectAll();
  if (before !== undefined) query = query.where('id', '<', before);
  const rows = await query
    .orderBy('id', 'desc')
    .limit(limit + 1)
    .execute();
  return rows.map(parse);
}

/** Every inhibition: routing reads them once per batch. */
export async function allInhibitions(db: Db): Promise<Inhibition[]> {
  const rows = await db.selectFrom('inhibitions').selectAll().orderBy('id').execute();
  return rows.map(parse);
}

export async function deleteInhibition(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('inhibitions').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** Parents open at `now` of these inhibitions with one of these keys. */
export async function openParents(
  db: Db,
  pairs: readonly { inhibitionId: string; key: string }[],
  now: number,
): Promise<Parent[]> {
  if (pairs.length === 0) return [];
  const keys = [...new Set(pairs.map((p) => p.key))];
  const ids = [...new Set(pairs.map((p) => p.inhibitionId))];
  const out: Parent[] = [];
  for (const chunk of chunks(keys)) {
    const rows = await db
      .selectFrom('inhibition_parents')
      .selectAll()
      .where('inhibition_id', 'in', ids)
      .where('key', 'in', chunk)
      .where('resolved_at', 'is', null)
      .where('expires_at', '>', now)
      .orderBy('opened_at')
      .orderBy('event_id')
      .execute();
    out.push(...rows);
  }
  return out;
}

export async function insertParents(db: Db, parents: readonly Parent[]): Promise<void> {
  for (const chunk of chunks(parents)) {
    await db
      .insertInto('inhibition_parents')
      .values(chunk)
      .onConflict((oc) => oc.doNothing())
      .execute();
  }
}

/** Marks parents resolved by an event. */
export async function resolveParents(
  db: Db,
  resolved: readonly { inhibitionId: string; eventId: string; by: string }[],
  now: number,
): Promise<void> {
  for (const r of resolved) {
    await db
      .updateTable('inhibition_parents')
      .set({ resolved_at: now, resolved_by: r.by })
      .where('inhibition_id', '=', r.inhibitionId)
      .where('event_id', '=', r.eventId)
      .where('resolved_at', 'is', null)
      .execute();
  }
}

/** The latest parents of an inhibition (open ones and the recently closed), newest first. */
export async function parentsOf(db: Db, inhibitionId: string, limit: number): Promise<Parent[]> {
  return db
    .selectFrom('inhibition_parents')
    .selectAll()
    .where('inhibition_id', '=', inhibitionId)
    .orderBy('opened_at', 'desc')
    .orderBy('event_id', 'desc')
    .limit(limit)
    .execute();
}
