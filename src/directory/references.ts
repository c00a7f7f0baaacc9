import type { Db } from '../db/engine.ts';
import { HeraldError } from '../errors.ts';
import { existingGroupIds } from './groups.repo.ts';
import { existingUserIds } from './users.repo.ts';

/**
 * Throws `unknown_reference` when any of the named users or groups does not exist; the problem lists them
 * in `unknown: {users, groups}`.
 */
export async function assertReferencesExist(
  db: Db,
  refs: { users?: readonly string[]; groups?: readonly string[] },
): Promise<void> {
  const users = refs.users ?? [];
  const groups = refs.groups ?? [];
  const knownUsers = users.length > 0 ? await existingUserIds(db, users) : new Set<string>();
  const knownGroups = groups.length > 0 ? await existingGroupIds(db, groups) : new Set<string>();
  const unknownUsers = [...new Set(users.filter((id) => !knownUsers.has(id)))];
  const unknownGroups = [...new Set(groups.filter((id) => !knownGroups.has(id)))];
  if (unknownUsers.length === 0 && unknownGroups.length === 0) return;
  const parts: string[] = [];
  if (unknownUsers.length > 0) parts.push(`unknown users: ${list(unknownUsers)}`);
  if (unknownGroups.length > 0) parts.push(`unknown groups: ${list(unknownGroups)}`);
  throw new HeraldError('unknown_reference', `The request names ${parts.join('; ')}`, {
    extra: { unknown: { users: unknownUsers, groups: unknownGroups } },
  });
}

function list(ids: string[]): string {
  const shown = ids.slice(0, 20).map((id) => `"${id}"`);
  return ids.length > 20 ? `${shown.join(', ')} and ${ids.length - 20} more` : shown.join(', ');
}
