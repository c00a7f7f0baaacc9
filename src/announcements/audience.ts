import type { ExpressionBuilder, SelectQueryBuilder } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { Database, UserRow } from '../db/tables.ts';
import { nestingBelow } from '../directory/groups.repo.ts';
import { assertReferencesExist } from '../directory/references.ts';
import { HeraldError, invalid } from '../errors.ts';

/**
 * Who an announcement reaches: a segment of the directory. `everyone`, or the people named by `groups`
 * (members of the groups nested in them included) and `users` (their union; everyone when neither is given),
 * narrowed by `roles` (holding any of them) and `attributes` (holding every one of them).
 */
export interface Audience {
  everyone?: true;
  groups?: string[];
  users?: string[];
  roles?: string[];
  attributes?: Record<string, AttributeValue>;
}

export type AttributeValue = string | number | boolean;

/** Users read per query while scanning the directory. */
const PAGE = 5_000;

/** Refuses a segment that names nobody or mixes `everyone` with narrower criteria (400 validation_failed). */
export function checkAudience(audience: Audience): void {
  const narrower = (['groups', 'users', 'roles', 'attributes'] as const).filter(
    (key) => audience[key] !== undefined,
  );
  if (audience.everyone === true && narrower.length > 0) {
    throw invalid('body.audience', `"everyone" cannot be combined with ${narrower.join(', ')}`);
  }
  if (audience.everyone !== true && narrower.length === 0) {
    throw invalid(
      'body.audience',
      'must be {"everyone": true} or name at least one of groups, users, roles, attributes',
    );
  }
}

/**
 * Throws `unknown_reference` when the segment names a user or group that does not exist, or a role or
 * attribute value no user holds: almost always a typo that would otherwise reach nobody without a word.
 */
export async function assertAudienceExists(db: Db, audience: Audience): Promise<void> {
  await assertReferencesExist(db, { users: audience.users ?? [], groups: audience.groups ?? [] });
  const roles = new Set(audience.roles ?? []);
  const pairs = new Map(Object.entries(audience.attributes ?? {}));
  if (roles.size === 0 && pairs.size === 0) return;
  let after: string | undefined;
  while (roles.size > 0 || pairs.size > 0) {
    let query = db.selectFrom('users').selectAll();
    if (after !== undefined) query = query.where('id', '>', after);
    const rows = await query.orderBy('id').limit(PAGE).execute();
    for (const row of rows) {
      const held = rolesOf(row);
      for (const role of roles) if (held.has(role)) roles.delete(role);
      const attributes = parseAttributes(row);
      for (const [name, value] of pairs) if (holds(attributes[name], value)) pairs.delete(name);
    }
    if (rows.length < PAGE) break;
    after = rows.at(-1)!.id;
  }
  if (roles.size === 0 && pairs.size === 0) return;
  const parts: string[] = [];
  if (roles.size > 0) parts.push(`roles no user holds: ${[...roles].map((r) => `"${r}"`).join(', ')}`);
  if (pairs.size > 0) {
    const text = [...pairs].map(([name, value]) => `${name}=${JSON.stringify(value)}`).join(', ');
    parts.push(`attribute values no user holds: ${text}`);
  }
  throw new HeraldError('unknown_reference', `The audience names ${parts.join('; ')}`, {
    extra: { unknown: { users: [], groups: [], roles: [...roles], attributes: Object.fromEntries(pairs) } },
  });
}

/** How many users the segment holds now. */
export async function countAudience(db: Db, audience: Audience): Promise<number> {
  if (!needsRowCheck(audience)) {
    const row = await candidates(db, audience, await groupsWithin(db, audience), undefined)
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirstOrThrow();
    // PostgreSQL answers count(*) as a bigint string.
    return Number(row.n);
  }
  const groups = await groupsWithin(db, audience);
  let count = 0;
  let after: string | undefined;
  for (;;) {
    const page = await audiencePage(db, audience, after, PAGE, groups);
    count += page.members.length;
    if (page.next === undefined) return count;
    after = page.next;
  }
}

/**
 * The next page of the segment in user id order: the members among (at most `limit`) users after `after`,
 * and the user id to continue after (undefined once the directory is exhausted).
 */
export async function audiencePage(
  db: Db,
  audience: Audience,
  after: string | undefined,
  limit: number,
  groups?: string[],
): Promise<{ members: string[]; next: string | undefined }> {
  const within = groups ?? (await groupsWithin(db, audience));
  // One row more than the page tells whether the directory goes on after it.
  if (!needsRowCheck(audience)) {
    const rows = await candidates(db, audience, within, after)
      .select('id')
      .orderBy('id')
      .limit(limit + 1)
      .execute();
    const members = rows.slice(0, limit).map((r) => r.id);
    return { members, next: rows.length > limit ? members.at(-1) : undefined };
  }
  const rows = await candidates(db, audience, within, after)
    .selectAll()
    .orderBy('id')
    .limit(limit + 1)
    .execute();
  const page = rows.slice(0, limit);
  return {
    members: page.filter((row) => isMember(row, audience)).map((r) => r.id),
    next: rows.length > limit ? page.at(-1)!.id : undefined,
  };
}

/** The audience's groups and every group nested in them, however deep (undefined when it names none). */
async function groupsWithin(db: Db, audience: Audience): Promise<string[] | undefined> {
  if (audience.groups === undefined) return undefined;
  const all = new Set(audience.groups);
  for (const children of (await nestingBelow(db, audience.groups)).values()) {
    for (const child of children) all.add(child);
  }
  return [...all];
}

const needsRowCheck = (audience: Audience) =>
  audience.roles !== undefined || audience.attributes !== undefined;

/**
 * Users the segment may hold, after `after`: members of `groups` (the audience's, nesting followed) and the
 * named users, narrowed by LIKE on the stored attributes JSON (one query for both engines). Roles and the
 * exact attribute values are checked on each row ({@link isMember}).
 */
function candidates(
  db: Db,
  audience: Audience,
  groups: string[] | undefined,
  after: string | undefined,
): SelectQueryBuilder<Database, 'users', object> {
  let query = db.selectFrom('users');
  if (after !== undefined) query = query.where('id', '>', after);
  const { users } = audience;
  if (groups !== undefined || users !== undefined) {
    query = query.where((eb: ExpressionBuilder<Database, 'users'>) => {
      const named = [];
      if (groups !== undefined) {
        const members = eb.selectFrom('group_members').select('user_id').where('group_id', 'in', groups);
        named.push(eb('id', 'in', members));
      }
      if (users !== undefined) named.push(eb('id', 'in', users));
      return eb.or(named);
    });
  }
  for (const [name, value] of Object.entries(audience.attributes ?? {})) {
    const text = typeof value === 'string' ? JSON.stringify(value).slice(1, -1) : String(value);
    query = query.where('attributes', 'like', `%${loosen(JSON.stringify(name))}:%${loosen(text)}%`);
  }
  return query;
}

// The engines disagree on LIKE's escape character, so wildcards and backslashes become `_` (any one
// character): the pattern only ever lets more rows through, never fewer.
function loosen(text: string): string {
  return text.replace(/[%_\\]/g, '_');
}

/** Whether a user (a row of `users`, whatever columns it has) belongs to the segment's narrowing criteria. */
export function isMember(row: UserRow, audience: Audience): boolean {
  if (audience.roles !== undefined) {
    const held = rolesOf(row);
    if (!audience.roles.some((role) => held.has(role))) return false;
  }
  if (audience.attributes !== undefined) {
    const attributes = parseAttributes(row);
    for (const [name, value] of Object.entries(audience.attributes)) {
      if (!holds(attributes[name], value)) return false;
    }
  }
  return true;
}

/**
 * A user's roles, wherever the directory keeps them: a `roles` column (a JSON array, should the users table
 * have one), the attribute `roles` (a list) or the attribute `role` (one name or a list).
 */
export function rolesOf(row: UserRow): Set<string> {
  const roles = new Set<string>();
  const add = (value: unknown) => {
    if (typeof value === 'string') roles.add(value);
    else if (Array.isArray(value)) for (const v of value) if (typeof v === 'string') roles.add(v);
  };
  const column = (row as UserRow & { roles?: unknown }).roles;
  if (typeof column === 'string' && column.startsWith('[')) add(safeParse(column));
  else add(column);
  const attributes = parseAttributes(row);
  add(attributes['roles']);
  add(attributes['role']);
  return roles;
}

/** An attribute holds a value when it equals it exactly, or is a list that contains it. */
function holds(actual: unknown, wanted: AttributeValue): boolean {
  return Array.isArray(actual) ? actual.includes(wanted) : actual === wanted;
}

function parseAttributes(row: UserRow): Record<string, unknown> {
  const value = safeParse(row.attributes);
  return value !== null && typeof value === 'object' ? (value as Record<string, unknown>) : {};
}

function safeParse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
