import type { Db } from '../db/engine.ts';
import { HeraldError } from '../errors.ts';
import { existingGroupIds } from './groups.repo.ts';
import { knownAttributes, knownRoles } from './traits.ts';
import { existingUserIds } from './users.repo.ts';

/** What a request names in the directory. Roles and attributes count as known once some user has them. */
export interface DirectoryRefs {
  users?: readonly string[];
  groups?: readonly string[];
  roles?: readonly string[];
  attributes?: readonly string[];
}

/**
 * Throws `unknown_reference` when any of the named users, groups, roles or attributes does not exist; the
 * problem lists them in `unknown: {users, groups}` (plus `roles` and `attributes` when some of those are
 * unknown).
 */
export async function assertReferencesExist(db: Db, refs: DirectoryRefs): Promise<void> {
  const users = refs.users ?? [];
  const groups = refs.groups ?? [];
  const roles = refs.roles ?? [];
  const attributes = refs.attributes ?? [];
  const knownUsers = users.length > 0 ? await existingUserIds(db, users) : new Set<string>();
  const knownGroups = groups.length > 0 ? await existingGroupIds(db, groups) : new Set<string>();
  const heldRoles = await knownRoles(db, roles);
  const heldAttributes = await knownAttributes(db, attributes);
  const unknown = {
    users: [...new Set(users.filter((id) => !knownUsers.has(id)))],
    groups: [...new Set(groups.filter((id) => !knownGroups.has(id)))],
    roles: [...new Set(roles.filter((role) => !heldRoles.has(role)))],
    attributes: [...new Set(attributes.filter((name) => !heldAttributes.has(name)))],
  };
  const parts: string[] = [];
  if (unknown.users.length > 0) parts.push(`unknown users: ${list(unknown.users)}`);
  if (unknown.groups.length > 0) parts.push(`unknown groups: ${list(unknown.groups)}`);
  if (unknown.roles.length > 0) parts.push(`roles no user holds: ${list(unknown.roles)}`);
  if (unknown.attributes.length > 0) parts.push(`attributes no user has: ${list(unknown.attributes)}`);
  if (parts.length === 0) return;
  const { roles: r, attributes: a, ...always } = unknown;
  throw new HeraldError('unknown_reference', `The request names ${parts.join('; ')}`, {
    extra: {
      unknown: {
        ...always,
        ...(r.length > 0 ? { roles: r } : {}),
        ...(a.length > 0 ? { attributes: a } : {}),
      },
    },
  });
}

function list(ids: string[]): string {
  const shown = ids.slice(0, 20).map((id) => `"${id}"`);
  return ids.length > 20 ? `${shown.join(', ')} and ${ids.length - 20} more` : shown.join(', ');
}
