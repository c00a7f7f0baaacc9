import { auditAdmin } from '../audit/audit.repo.ts';
import { revokeCredentials } from '../auth/credentials.repo.ts';
import type { App, Deps } from '../deps.ts';
import { type FieldProblem, HeraldError, notFound } from '../errors.ts';
import { decodeCursor, Page, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { presentUser } from './users.present.ts';
import { deleteUser, existingUserIds, findUser, listUsers, upsertUsers } from './users.repo.ts';
import { BulkUsersBody, BulkUsersResult, User, UserBody, UserParams, UsersQuery } from './users.schema.ts';
import { checkUser, type UserInput } from './users.validate.ts';

const tags = ['directory'];
const MAX_BULK = 10_000;
// A full bulk sync is bigger than an event; the admin may send up to this much in one request.
const BULK_BODY_LIMIT = 32 * 1024 * 1024;

/** Admin API for the directory's users: upsert one or many, list, get, delete. */
export async function usersRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/users/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a user (fields left out are cleared)',
        params: UserParams,
        body: UserBody,
        response: { 200: User, 201: User },
      },
    },
    async (request, reply) => {
      const problems: FieldProblem[] = [];
      const user = checkUser(request.body, request.params.id, 'body.', problems);
      if (user === undefined) throw validationFailed(problems);
      const now = deps.clock.now();
      const { row, created } = await db.transaction().execute(async (trx) => {
        const created = (await findUser(trx, user.id)) === undefined;
        await upsertUsers(trx, [user], now);
        await auditAdmin(trx, now, created ? 'user.created' : 'user.updated', ['user', user.id], user);
        return { row: (await findUser(trx, user.id))!, created };
      });
      reply.code(created ? 201 : 200);
      return presentUser(row);
    },
  );

  app.post(
    '/users/bulk',
    {
      preHandler: admin,
      bodyLimit: Math.max(deps.config.bodyLimitBytes, BULK_BODY_LIMIT),
      // users.validate.ts checks every item (naming problems `users[i].field`); the schema only documents.
      validatorCompiler: () => () => true,
      schema: {
        tags,
        security,
        summary: `Create or replace up to ${MAX_BULK} users at once, all or nothing`,
        body: BulkUsersBody,
        response: { 200: BulkUsersResult },
      },
    },
    async (request) => {
      const users = checkBulk(request.body);
      const now = deps.clock.now();
      return db.transaction().execute(async (trx) => {
        const existing = await existingUserIds(
          trx,
          users.map((u) => u.id),
        );
        await upsertUsers(trx, users, now);
        const result = { created: users.length - existing.size, updated: existing.size };
        await auditAdmin(trx, now, 'user.bulk_upserted', ['user', '*'], { count: users.length, ...result });
        return result;
      });
    },
  );

  app.get(
    '/users',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          'List users in id order; filter by `email`, `role` or by attributes (`attr.location=berlin`)',
        querystring: UsersQuery,
        response: { 200: Page(User) },
      },
    },
    async (request) => {
      const query = request.query as Record<string, unknown>;
      const limit = request.query.limit ?? 50;
      const attributes: Record<string, string> = {};
      for (const [key, value] of Object.entries(query)) {
        if (key.startsWith('attr.') && key.length > 5) attributes[key.slice(5)] = String(value);
      }
      const rows = await listUsers(db, {
        after: decodeCursor(request.query.cursor),
        limit: limit + 1,
        ...(request.query.email === undefined ? {} : { email: request.query.email }),
        ...(request.query.role === undefined ? {} : { role: request.query.role }),
        attributes,
      });
      return toPage(rows, limit, (r) => r.id, presentUser);
    },
  );

  app.get(
    '/users/:id',
    {
      preHandler: admin,
      schema: { tags, security, summary: 'Get a user', params: UserParams, response: { 200: User } },
    },
    async (request) => {
      const row = await findUser(db, request.params.id);
      if (row === undefined) throw notFound('User', request.params.id);
      return presentUser(row);
    },
  );

  app.delete(
    '/users/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a user: their group memberships and inbox tokens go too',
        params: UserParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteUser(trx, id))) throw notFound('User', id);
        await revokeCredentials(trx, { kind: 'user', ownerId: id }, now);
        await auditAdmin(trx, now, 'user.deleted', ['user', id]);
      });
      deps.auth.forget();
      return reply.code(204).send(null);
    },
  );
}

/** Checks a bulk body: every user, with problems named `users[i].field`, and no id twice. */
function checkBulk(body: unknown): UserInput[] {
  const list = (body as { users?: unknown } | null)?.users;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_BULK) {
    throw validationFailed([{ field: 'body.users', message: `must be a list of 1 to ${MAX_BULK} users` }]);
  }
  const problems: FieldProblem[] = [];
  for (const key of Object.keys(body as object)) {
    if (key !== 'users') problems.push({ field: `body.${key}`, message: 'is not a known field' });
  }
  const users: UserInput[] = [];
  const seen = new Map<string, number>();
  list.forEach((raw, i) => {
    const user = checkUser(raw, undefined, `users[${i}].`, problems);
    if (user === undefined) return;
    const first = seen.get(user.id);
    if (first === undefined) seen.set(user.id, i);
    else problems.push({ field: `users[${i}].id`, message: `repeats users[${first}].id` });
    users.push(user);
  });
  if (problems.length > 0) throw validationFailed(problems);
  return users;
}

const MAX_PROBLEMS = 100;

function validationFailed(problems: FieldProblem[]): HeraldError {
  const first = problems[0]!;
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more problems)` : '';
  return new HeraldError('validation_failed', `${first.field} ${first.message}${more}`, {
    errors: problems.slice(0, MAX_PROBLEMS),
  });
}
