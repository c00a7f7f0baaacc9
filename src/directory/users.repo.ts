import type { Db } from '../db/engine.ts';
import type { UserRow } from '../db/tables.ts';
import type { UserInput } from './users.validate.ts';

export type { UserRow };

/** Ids per `in (...)` list. */
const IN_CHUNK = 500;
// SQLite allows 32,766 bound values per statement; a user row binds 10.
const INSERT_CHUNK = 3000;

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

function toRow(user: UserInput, now: number) {
  return { ...user, attributes: JSON.stringify(user.attributes), created_at: now, updated_at: now };
}

/**
 * Inserts or replaces users in multi-row statements (`on conflict (id) do update`); `created_at` of users
 * that existed is kept. The caller holds the transaction. Ids must be unique within `users`.
 */
export async function upsertUsers(db: Db, users: readonly UserInput[], now: number): Promise<void> {
  for (const chunk of chunks(users, INSERT_CHUNK)) {
    await db
      .insertInto('users')
      .values(chunk.map((u) => toRow(u, now)))
      .onConflict((oc) =>
        oc.column('id').doUpdateSet((eb) => ({
          name: eb.ref('excluded.name'),
          email: eb.ref('excluded.email'),
          phone: eb.ref('excluded.phone'),
          locale: eb.ref('excluded.locale'),
          timezone: eb.ref('excluded.timezone'),
          manager: eb.ref('excluded.manager'),
          attributes: eb.ref('excluded.attributes'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
  }
}

export async function findUser(db: Db, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The users with these ids (those that exist, in no particular order). */
export async function findUsersByIds(db: Db, ids: string[]): Promise<UserRow[]> {
  const out: UserRow[] = [];
  for (const chunk of chunks([...new Set(ids)], IN_CHUNK)) {
    out.push(...(await db.selectFrom('users').selectAll().where('id', 'in', chunk).execute()));
  }
  return out;
}

/** Which of `ids` exist as users. */
export async function existingUserIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const chunk of chunks([...new Set(ids)], IN_CHUNK)) {
    const rows = await db.selectFrom('users').select('id').where('id', 'in', chunk).execute();
    for (const row of rows) found.add(row.id);
  }
  return found;
}

/** The users with these email addresses, ignoring case (emails are stored in lower case). */
export async function findUsersByEmails(db: Db, emails: string[]): Promise<UserRow[]> {
  const wanted = [...new Set(emails.map((e) => e.toLowerCase()))];
  const out: UserRow[] = [];
  for (const chunk of chunks(wanted, IN_CHUNK)) {
    out.push(...(await db.selectFrom('users').selectAll().where('email', 'in', chunk).execute()));
  }
  return out;
}

export interface UserFilter {
  after: string | undefined;
  limit: number;
  email?: string;
  /** Attribute name → the value it must equal (or, for a list attribute, hold). */
  attributes?: Record<string, string>;
}

/** Users in id order after `filter.after`, at most `filter.limit`. */
export async function listUsers(db: Db, filter: UserFilter): Promise<UserRow[]> {
  const wanted = Object.entries(filter.attributes ?? {});
  const out: UserRow[] = [];
  let after = filter.after;
  // Attribute filters narrow rows with LIKE on the stored JSON (one query for both engines), then check
  // exactly here; a page may need more than one round when LIKE lets through rows that do not match.
  for (;;) {
    let query = db.selectFrom('users').selectAll();
    if (after !== undefined) query = query.where('id', '>', after);
    if (filter.email !== undefined) query = query.where('email', '=', filter.email.toLowerCase());
    for (const [name, value] of wanted) {
      const text = JSON.stringify(value).slice(1, -1);
      query = query.where('attributes', 'like', `%${loosen(JSON.stringify(name))}:%${loosen(text)}%`);
    }
    const batch = await query.orderBy('id').limit(filter.limit).execute();
    if (wanted.length === 0) return batch;
    for (const row of batch) {
      if (hasAttributes(row, wanted)) out.push(row);
      if (out.length === filter.limit) return out;
    }
    if (batch.length < filter.limit) return out;
    after = batch.at(-1)!.id;
  }
}

// The engines disagree on LIKE's escape character (PostgreSQL: backslash; SQLite: none), so wildcards and
// backslashes become `_` (any one character): the pattern only ever lets more rows through, never fewer.
function loosen(text: string): string {
  return text.replace(/[%_\\]/g, '_');
}

function hasAttributes(row: UserRow, wanted: [string, string][]): boolean {
  const attributes = JSON.parse(row.attributes) as Record<string, unknown>;
  return wanted.every(([name, value]) => {
    const actual = attributes[name];
    if (Array.isArray(actual)) return actual.includes(value);
    return actual !== undefined && String(actual) === value;
  });
}

/** Deletes a user (group memberships go with it); returns whether it existed. */
export async function deleteUser(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
