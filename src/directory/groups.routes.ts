import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import type { App, Deps } from '../deps.ts';
import { invalid, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import {
  addMembers,
  childGroups,
  deleteGroup,
  findGroup,
  type GroupRow,
  groupMembers,
  listGroups,
  nestingCycle,
  removeMember,
  replaceChildGroups,
  replaceMembers,
  touchGroup,
  upsertGroup,
} from './groups.repo.ts';
import { Group, GroupBody, GroupParams, GroupSummary, MemberParams, MembersBody } from './groups.schema.ts';
import { assertReferencesExist } from './references.ts';

const tags = ['directory'];

/** Admin API for groups (teams, shared queues) and their members. */
export async function groupsRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/groups/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a group with exactly the given members and nested groups',
        params: GroupParams,
        body: GroupBody,
        response: { 200: Group, 201: Group },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const { name, queue = false } = request.body;
      const members = [...new Set(request.body.members)];
      const children = [...new Set(request.body.groups ?? [])];
      const now = deps.clock.now();
      const { group, created } = await db.transaction().execute(async (trx) => {
        await assertReferencesExist(trx, { users: members, groups: children.filter((g) => g !== id) });
        const cycle = await nestingCycle(trx, id, children);
        if (cycle !== undefined) {
          throw invalid(
            `body.groups.${children.indexOf(cycle[1]!)}`,
            `nesting "${cycle[1]}" in "${id}" would make a cycle: ${cycle.join(' → ')}`,
          );
        }
        const created = await upsertGroup(trx, { id, name, queue }, now);
        await replaceMembers(trx, id, members);
        await replaceChildGroups(trx, id, children);
        await auditAdmin(trx, now, created ? 'group.created' : 'group.updated', ['group', id], {
          name,
          queue,
          members: members.length,
          groups: children,
        });
        return { group: await withMembers(trx, (await findGroup(trx, id))!), created };
      });
      reply.code(created ? 201 : 200);
      return group;
    },
  );

  app.get(
    '/groups',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List groups in id order, with member counts',
        querystring: Type.Object(PageQuery),
        response: { 200: Page(GroupSummary) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listGroups(db, { after: decodeCursor(request.query.cursor), limit: limit + 1 });
      return toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => ({ ...presentGroup(r), member_count: r.member_count }),
      );
    },
  );

  app.get(
    '/groups/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get a group with its members',
        params: GroupParams,
        response: { 200: Group },
      },
    },
    async (request) => {
      const row = await findGroup(db, request.params.id);
      if (row === undefined) throw notFound('Group', request.params.id);
      return withMembers(db, row);
    },
  );

  app.delete(
    '/groups/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a group',
        params: GroupParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteGroup(trx, id))) throw notFound('Group', id);
        await auditAdmin(trx, now, 'group.deleted', ['group', id]);
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/groups/:id/members',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Add members to a group (those already in stay)',
        params: GroupParams,
        body: MembersBody,
        response: { 200: Group },
      },
    },
    async (request) => {
      const { id } = request.params;
      const users = [...new Set(request.body.users)];
      const now = deps.clock.now();
      return db.transaction().execute(async (trx) => {
        if ((await findGroup(trx, id)) === undefined) throw notFound('Group', id);
        await assertReferencesExist(trx, { users });
        await addMembers(trx, id, users);
        const row = (await touchGroup(trx, id, now))!;
        await auditAdmin(trx, now, 'group.members_added', ['group', id], { users });
        return withMembers(trx, row);
      });
    },
  );

  app.delete(
    '/groups/:id/members/:userId',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Remove a member from a group',
        params: MemberParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id, userId } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if ((await findGroup(trx, id)) === undefined) throw notFound('Group', id);
        if (!(await removeMember(trx, id, userId))) throw notFound(`Member of group "${id}"`, userId);
        await touchGroup(trx, id, now);
        await auditAdmin(trx, now, 'group.member_removed', ['group', id], { user: userId });
      });
      return reply.code(204).send(null);
    },
  );
}

function presentGroup(row: GroupRow) {
  return {
    id: row.id,
    name: row.name,
    queue: row.queue === 1,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

async function withMembers(db: Db, row: GroupRow) {
  const members = await groupMembers(db, [row.id]);
  return {
    ...presentGroup(row),
    members: members.map((m) => m.user_id),
    groups: await childGroups(db, row.id),
  };
}
