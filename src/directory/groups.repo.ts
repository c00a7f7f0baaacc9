import type { Selectable } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { GroupsTable } from '../db/tables.ts';

export type GroupRow = Selectable<GroupsTable>;

const IN_CHUNK = 500;
// Two bound values per membership row; well inside SQLite's 32,766.
const INSERT_CHUNK = 5000;

function* chunks<T>(items: readonly T[], size: number): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}

/** Creates the group or renames it; returns whether it was created. */
export async function upsertGroup(
  db: Db,
  group: { id: string; name: string },
  now: number,
): Promise<boolean> {
  const existed = await findGroup(db, group.id);
  await db
    .insertInto('groups')
    .values({ ...group, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet({ name: group.name, updated_at: now }))
    .execute();
  return existed === undefined;
}

export async function findGroup(db: Db, id: string): Promise<GroupRow | undefined> {
  return db.selectFrom('groups').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Marks a group changed (its members changed). */
export async function touchGroup(db: Db, id: string, now: number): Promise<GroupRow | undefined> {
  return db
    .updateTable('groups')
    .set({ updated_at: now })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** Groups in id order after `after`, with their member counts; at most `limit`. */
export async function listGroups(db: Db, page: { after: string | undefined; limit: number }) {
  let query = db
    .selectFrom('groups')
    .selectAll('groups')
    .select((eb) =>
      eb
        .selectFrom('group_members')
        .select(eb.fn.countAll<number | string>().as('n'))
        .whereRef('group_members.group_id', '=', 'groups.id')
        .as('member_count'),
    );
  if (page.after !== undefined) query = query.where('groups.id', '>', page.after);
  const rows = await query.orderBy('groups.id').limit(page.limit).execute();
  // PostgreSQL answers count(*) as a bigint string.
  return rows.map((r) => ({ ...r, member_count: Number(r.member_count ?? 0) }));
}

/** Which of `ids` exist as groups. */
export async function existingGroupIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const chunk of chunks([...new Set(ids)], IN_CHUNK)) {
    const rows = await db.selectFrom('groups').select('id').where('id', 'in', chunk).execute();
    for (const row of rows) found.add(row.id);
  }
  return found;
}

/** Deletes a group (its memberships go with it); returns whether it existed. */
export async function deleteGroup(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('groups').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

/** The memberships of these groups, ordered by group then user. */
export async function groupMembers(
  db: Db,
  groupIds: string[],
): Promise<{ group_id: string; user_id: string }[]> {
  const out: { group_id: string; user_id: string }[] = [];
  for (const chunk of chunks([...new Set(groupIds)], IN_CHUNK)) {
    const rows = await db
      .selectFrom('group_members')
      .select(['group_id', 'user_id'])
      .where('group_id', 'in', chunk)
      .orderBy('group_id')
      .orderBy('user_id')
      .execute();
    out.push(...rows);
  }
  return out;
}

/** Adds members (those already in are left alone). */
export async function addMembers(db: Db, groupId: string, userIds: readonly string[]): Promise<void> {
  for (const chunk of chunks([...new Set(userIds)], INSERT_CHUNK)) {
    await db
      .insertInto('group_members')
      .values(chunk.map((user_id) => ({ group_id: groupId, user_id })))
      .onConflict((oc) => oc.columns(['group_id', 'user_id']).doNothing())
      .execute();
  }
}

/** Makes `userIds` the exact member list of the group. */
export async function replaceMembers(db: Db, groupId: string, userIds: readonly string[]): Promise<void> {
  await db.deleteFrom('group_members').where('group_id', '=', groupId).execute();
  await addMembers(db, groupId, userIds);
}

/** Removes one member; returns whether they were one. */
export async function removeMember(db: Db, groupId: string, userId: string): Promise<boolean> {
  const result = await db
    .deleteFrom('group_members')
    .where('group_id', '=', groupId)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
