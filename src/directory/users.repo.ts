import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { UserRow } from '../db/tables.ts';
import { writeTraits } from './traits.ts';
import type { UserInput } from './users.validate.ts';

export type { UserRow };

// SQLite allows 32,766 bound values per statement; a user row binds 11.
const INSERT_CHUNK = 2500;

function toRow(user: UserInput, now: number) {
  return {
    ...user,
    roles: JSON.stringify(user.roles),
    attributes: JSON.stringify(user.attributes),
    created_at: now,
    updated_at: now,
  };
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
          roles: eb.ref('excluded.roles'),
          attributes: eb.ref('excluded.attributes'),
          updated_at: eb.ref('excluded.updated_at'),
        })),
      )
      .execute();
    await writeTraits(db, chunk);
  }
}

export async function findUser(db: Db, id: string): Promise<UserRow | undefined> {
  return db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
}

/** The users with these ids (those that exist, in no particular order). */
export async function findUsersByIds(db: Db, ids: string[]): Promise<UserRow[]> {
  const out: UserRow[] = [];
  for (const chunk of chunks([...new Set(ids)])) {
    out.push(...(await db.selectFrom('users').selectAll().where('id', 'in', chunk).execute()));
  }
  return out;
}

/** Which of `ids` exist as users. */
export async function existingUserIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const chunk of chunks([...new Set(ids)])) {
    const rows = await db.selectFrom('users').select('id').where('id', 'in', chunk).execute();
    for (const row of rows) found.add(row.id);
  }
  return found;
}

/** The users with these email addresses, ignoring case (emails are stored in lower case). */
export async function findUsersByEmails(db: Db, emails: string[]): Promise<UserRow[]> {
  const wanted = [...new Set(emails.map((e) => e.toLowerCase()))];
  const out: UserRow[] = [];
  for (const chunk of chunks(wanted)) {
    out.push(...(await db.selectFrom('users').selectAll().where('email', 'in', chunk).execute()));
  }
  return out;
}

/** Each of these users' manager (null when they have none) and whether the manager is in the directory. */
export async function findManagers(
  db: Db,
  ids: readonly string[],
): Promise<Map<string, { manager: string | null; known: boolean }>> {
  const out = new Map<string, { manager: string | null; known: boolean }>();
  for (const chunk of chunks([...new Set(ids)])) {
    const rows = await db
      .selectFrom('users as u')
      .leftJoin('users as m', 'm.id', 'u.manager')
      .select(['u.id as id', 'u.manager as manager', 'm.id as manager_id'])
      .where('u.id', 'in', chunk)
      .execute();
    for (const row of rows) out.set(row.id, { manager: row.manager, known: row.manager_id !== null });
  }
  return out;
}

export interface UserFilter {
  after: string | undefined;
  limit: number;
  email?: string;
  /** Users holding this role. */
  role?: string;
  /** Attribute name → the value it must equal (or, for a list attribute, hold). */
  attributes?: Record<string, string>;
}

/** Users in id order after `filter.after`, at most `filter.limit`. */
export async function listUsers(db: Db, filter: UserFilter): Promise<UserRow[]> {
  let query = db.selectFrom('users').selectAll();
  if (filter.after !== undefined) query = query.where('id', '>', filter.after);
  if (filter.email !== undefined) query = query.where('email', '=', filter.email.toLowerCase());
  const role = filter.role;
  if (role !== undefined) {
    query = query.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('user_roles')
          .select('role')
          .whereRef('user_roles.user_id', '=', 'users.id')
          .where('role', '=', role),
      ),
    );
  }
  for (const [name, value] of Object.entries(filter.attributes ?? {})) {
    query = query.where(({ exists, selectFrom }) =>
      exists(
        selectFrom('user_attributes')
          .select('name')
          .whereRef('user_attributes.user_id', '=', 'users.id')
          .where('name', '=', name)
          .where('value', '=', value),
      ),
    );
  }
  return query.orderBy('id').limit(filter.limit).execute();
}

/** Deletes a user (group memberships go with it); returns whether it existed. */
export async function deleteUser(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('users').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
