import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { AttributeValue } from './users.validate.ts';

/*
 * Roles and attribute values are kept twice: on the user (as the API shows them) and one row each in
 * `user_roles` / `user_attributes`, so that a directory segment is an index lookup. These functions keep the
 * rows in step with the users; the caller holds the transaction.
 */

/** How an attribute value is compared: as text (`3` and `"3"` are the same), a list by each item. */
export function attributeTexts(value: AttributeValue | unknown): string[] {
  const list = Array.isArray(value) ? value : [value];
  return list
    .filter((v) => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
    .map(String);
}

// Three bound values per row; well inside SQLite's 32,766.
const INSERT_CHUNK = 8000;

/** Replaces the role and attribute rows of these users with what they now hold. */
export async function writeTraits(
  db: Db,
  users: readonly { id: string; roles: readonly string[]; attributes: Record<string, AttributeValue> }[],
): Promise<void> {
  for (const chunk of chunks(users)) {
    const ids = chunk.map((u) => u.id);
    await db.deleteFrom('user_roles').where('user_id', 'in', ids).execute();
    await db.deleteFrom('user_attributes').where('user_id', 'in', ids).execute();
  }
  const roles = users.flatMap((u) => u.roles.map((role) => ({ user_id: u.id, role })));
  const attributes = users.flatMap((u) =>
    Object.entries(u.attributes).flatMap(([name, value]) =>
      [...new Set(attributeTexts(value))].map((text) => ({ user_id: u.id, name, value: text })),
    ),
  );
  for (const chunk of chunks(roles, INSERT_CHUNK)) {
    await db.insertInto('user_roles').values(chunk).execute();
  }
  for (const chunk of chunks(attributes, INSERT_CHUNK)) {
    await db.insertInto('user_attributes').values(chunk).execute();
  }
}

/** Which of these roles some user holds (one index probe each: rules name a handful). */
export async function knownRoles(db: Db, roles: readonly string[]): Promise<Set<string>> {
  const known = new Set<string>();
  for (const role of new Set(roles)) {
    const row = await db
      .selectFrom('user_roles')
      .select('role')
      .where('role', '=', role)
      .limit(1)
      .executeTakeFirst();
    if (row !== undefined) known.add(role);
  }
  return known;
}

/** Which of these attribute names some user has (one index probe each). */
export async function knownAttributes(db: Db, names: readonly string[]): Promise<Set<string>> {
  const known = new Set<string>();
  for (const name of new Set(names)) {
    const row = await db
      .selectFrom('user_attributes')
      .select('name')
      .where('name', '=', name)
      .limit(1)
      .executeTakeFirst();
    if (row !== undefined) known.add(name);
  }
  return known;
}
