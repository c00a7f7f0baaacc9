import type { Selectable } from 'kysely';
import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { GroupsTable } from '../db/tables.ts';

export type GroupRow = Selectable<GroupsTable>;

// Two bound values per membership row; well inside SQLite's 32,766.
const INSERT_CHUNK = 5000;

/** Creates the group or renames it (and sets whether it is a shared queue); returns whether it was created. */
export async function upsertGroup(
  db: Db,
  group: { id: string; name: string; queue: boolean },
  now: number,
): Promise<boolean> {
  const existed = await findGroup(db, group.id);
  const queue = group.queue ? 1 : 0;
  await db
    .insertInto('groups')
    .values({ id: group.id, name: group.name, queue, created_at: now, updated_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet({ name: group.name, queue, updated_at: now }))
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
  for (const chunk of chunks([...new Set(ids)])) {
    const rows = await db.selectFrom('groups').select('id').where('id', 'in', chunk).execute();
    for (const row of rows) found.add(row.id);
  }
  return found;
}

/** Which of `ids` are groups that act as a shared queue. */
export async function queueGroupIds(db: Db, ids: readonly string[]): Promise<Set<string>> {
  const found = new Set<string>();
  for (const chunk of chunks([...new Set(ids)])) {
    const rows = await db
      .selectFrom('groups')
      .select('id')
      .where('id', 'in', chunk)
      .where('queue', '=', 1)
      .execute();
    for (const row of rows) found.add(row.id);
  }
  return found;
}

/**
 * Every group `userId` belongs to, directly or through nesting (a member of a nested group belongs to the
 * groups it is nested in); one query per level of nesting, safe against cycles.
 */
export async function groupsContaining(db: Db, userId: string): Promise<Set<string>> {
  const direct = await db
    .selectFrom('group_members')
    .select('group_id')
    .where('user_id', '=', userId)
    .execute();
  const seen = new Set(direct.map((r) => r.group_id));
  let frontier = [...seen];
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const chunk of chunks(frontier)) {
      const rows = await db
        .selectFrom('group_groups')
        .select('group_id')
        .where('child_id', 'in', chunk)
        .execute();
      for (const row of rows) {
        if (seen.has(row.group_id)) continue;
        seen.add(row.group_id);
        next.push(row.group_id);
      }
    }
    frontier = next;
  }
  return seen;
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
  for (const chunk of chunks([...new Set(groupIds)])) {
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

/** The groups nested directly in a group, by id. */
export async function childGroups(db: Db, groupId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('group_groups')
    .select('child_id')
    .where('group_id', '=', groupId)
    .orderBy('child_id')
    .execute();
  return rows.map((r) => r.child_id);
}

/** Makes `childIds` the exact list of groups nested in the group. */
export async function replaceChildGroups(
  db: Db,
  groupId: string,
  childIds: readonly string[],
): Promise<void> {
  await db.deleteFrom('group_groups').where('group_id', '=', groupId).execute();
  for (const chunk of chunks([...new Set(childIds)], INSERT_CHUNK)) {
    await db
      .insertInto('group_groups')
      .values(chunk.map((child_id) => ({ group_id: groupId, child_id })))
      .execute();
  }
}

/**
 * Every group reachable from `roots` through nesting, as parent → children edges; one query per level of
 * nesting, and safe against cycles (a group already seen is not asked for again).
 */
export async function nestingBelow(db: Db, roots: readonly string[]): Promise<Map<string, string[]>> {
  const edges = new Map<string, string[]>();
  let frontier = [...new Set(roots)];
  const seen = new Set(frontier);
  while (frontier.length > 0) {
    const next: string[] = [];
    for (const chunk of chunks(frontier)) {
      const rows = await db
        .selectFrom('group_groups')
        .select(['group_id', 'child_id'])
        .where('group_id', 'in', chunk)
        .execute();
      for (const row of rows) {
        const list = edges.get(row.group_id) ?? [];
        list.push(row.child_id);
        edges.set(row.group_id, list);
        if (!seen.has(row.child_id)) {
          seen.add(row.child_id);
          next.push(row.child_id);
        }
      }
    }
    frontier = next;
  }
  return edges;
}

/** The groups `root` contains, itself included, following nesting (each once, whatever cycles exist). */
export function reachableGroups(root: string, edges: ReadonlyMap<string, readonly string[]>): string[] {
  const seen = new Set([root]);
  const stack = [root];
  while (stack.length > 0) {
    for (const child of edges.get(stack.pop()!) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      stack.push(child);
    }
  }
  return [...seen];
}

/**
 * The nesting path that putting `childIds` into `groupId` would close into a cycle (`[groupId, child, ...,
 * groupId]`), or undefined when it would not.
 */
export async function nestingCycle(
  db: Db,
  groupId: string,
  childIds: readonly string[],
): Promise<string[] | undefined> {
  if (childIds.includes(groupId)) return [groupId, groupId];
  const edges = await nestingBelow(db, childIds);
  for (const child of childIds) {
    const path = pathTo(child, groupId, edges);
    if (path !== undefined) return [groupId, ...path];
  }
  return undefined;
}

function pathTo(
  from: string,
  to: string,
  edges: ReadonlyMap<string, readonly string[]>,
): string[] | undefined {
  const parent = new Map<string, string>();
  const queue = [from];
  const seen = new Set(queue);
  while (queue.length > 0) {
    const at = queue.shift()!;
    if (at === to) {
      const path = [at];
      while (path[0] !== from) path.unshift(parent.get(path[0]!)!);
      return path;
    }
    for (const child of edges.get(at) ?? []) {
      if (seen.has(child)) continue;
      seen.add(child);
      parent.set(child, at);
      queue.push(child);
    }
  }
  return undefined;
}

/**
 * The people of each group, following nesting: root group id → member user ids. A group that does not exist
 * or has nobody in it (directly or below) is left out. A few queries for the whole list, not per group.
 */
export async function expandGroups(db: Db, roots: readonly string[]): Promise<Map<string, Set<string>>> {
  const edges = await nestingBelow(db, roots);
  const all = new Set(roots);
  for (const children of edges.values()) for (const child of children) all.add(child);
  const membersOf = Map.groupBy(await groupMembers(db, [...all]), (m) => m.group_id);
  const out = new Map<string, Set<string>>();
  for (const root of new Set(roots)) {
    const people = new Set<string>();
    for (const group of reachableGroups(root, edges)) {
      for (const m of membersOf.get(group) ?? []) people.add(m.user_id);
    }
    if (people.size > 0) out.set(root, people);
  }
  return out;
}
