import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { RULE_CHANNELS } from '../channels/registry.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { assertReferencesExist } from '../directory/references.ts';
import { type FieldProblem, invalidMany, notFound } from '../errors.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { DURATION_PATTERN, parseDuration } from '../noise/time.ts';
import { PolicyId } from './options.ts';
import {
  deletePolicy,
  findPolicy,
  type Level,
  listPolicies,
  type Policy,
  upsertPolicy,
} from './policies.repo.ts';

const tags = ['escalation'];
const Id = Type.String({ minLength: 1, maxLength: 200 });

const Targets = Type.Object(
  {
    recipients: Type.Optional(Type.Boolean({ description: 'The people the event notified' })),
    managers: Type.Optional(Type.Boolean({ description: 'Their managers (users.manager)' })),
    groups: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 50, uniqueItems: true })),
    users: Type.Optional(Type.Array(Id, { minItems: 1, maxItems: 100, uniqueItems: true })),
  },
  { additionalProperties: false, description: 'Whom the level notifies; at least one' },
);

const LevelShape = Type.Object(
  {
    after: Type.String({
      pattern: DURATION_PATTERN,
      maxLength: 12,
      description: 'How long after the previous level (the start, for the first) it fires (`15m`)',
    }),
    targets: Targets,
    channels: Type.Array(Type.String({ minLength: 1, maxLength: 20 }), {
      minItems: 1,
      maxItems: 4,
      uniqueItems: true,
      description: `Channels to notify on (${RULE_CHANNELS.join(', ')})`,
    }),
  },
  { additionalProperties: false },
);

const PolicyBody = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.Null(), Type.String({ maxLength: 200 })])),
    levels: Type.Array(LevelShape, { minItems: 1, maxItems: 10 }),
    repeat: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 10,
        default: 0,
        description: 'Runs of the levels after the first',
      }),
    ),
  },
  { additionalProperties: false },
);

/** A policy as the API shows it. */
export const PolicyShape = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  levels: Type.Array(LevelShape),
  repeat: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const Params = Type.Object({ id: PolicyId });

const MAX_AFTER = 30 * 86_400_000;

function present(p: Policy) {
  return {
    id: p.id,
    name: p.name,
    levels: p.levels,
    repeat: p.repeat,
    created_at: iso(p.created_at),
    updated_at: iso(p.updated_at),
  };
}

function levelProblems(levels: readonly Level[]): FieldProblem[] {
  const problems: FieldProblem[] = [];
  levels.forEach((level, i) => {
    const field = `body.levels.${i}`;
    const t = level.targets;
    if (!t.recipients && !t.managers && (t.groups?.length ?? 0) === 0 && (t.users?.length ?? 0) === 0) {
      problems.push({
        field: `${field}.targets`,
        message: 'must name recipients, managers, groups or users',
      });
    }
    if ((parseDuration(level.after) ?? Infinity) > MAX_AFTER) {
      problems.push({ field: `${field}.after`, message: 'must be at most 30 days' });
    }
    level.channels.forEach((channel, j) => {
      if (!RULE_CHANNELS.includes(channel)) {
        problems.push({
          field: `${field}.channels.${j}`,
          message: `"${channel}" is not a known channel (known: ${RULE_CHANNELS.join(', ')})`,
        });
      }
    });
  });
  return problems;
}

/** `/escalation-policies` (admin): who is notified, on which channels, when nobody answers. */
export async function policiesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/escalation-policies/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary:
          'Create or replace an escalation policy; events already escalating keep the copy they started with',
        params: Params,
        body: PolicyBody,
        response: { 200: PolicyShape, 201: PolicyShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const problems = levelProblems(body.levels);
      if (problems.length > 0) throw invalidMany(problems);
      const policy = {
        id: request.params.id,
        name: body.name ?? null,
        levels: body.levels,
        repeat: body.repeat ?? 0,
      };
      const now = deps.clock.now();
      const { saved, created } = await db.transaction().execute(async (trx) => {
        await assertReferencesExist(trx, {
          users: body.levels.flatMap((l) => l.targets.users ?? []),
          groups: body.levels.flatMap((l) => l.targets.groups ?? []),
        });
        const created = await upsertPolicy(trx, policy, now);
        await auditAdmin(
          trx,
          now,
          created ? 'escalation_policy.created' : 'escalation_policy.updated',
          ['escalation_policy', policy.id],
          policy,
        );
        return { saved: (await findPolicy(trx, policy.id))!, created };
      });
      reply.code(created ? 201 : 200);
      return present(saved);
    },
  );

  app.get(
    '/escalation-policies',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Escalation policies, by id',
        querystring: Type.Object(PageQuery),
        response: { 200: Page(PolicyShape) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listPolicies(db, { after: decodeCursor(request.query.cursor), limit });
      return toPage(rows, limit, (p) => p.id, present);
    },
  );

  app.get(
    '/escalation-policies/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'One escalation policy',
        params: Params,
        response: { 200: PolicyShape },
      },
    },
    async (request) => {
      const policy = await findPolicy(db, request.params.id);
      if (policy === undefined) throw notFound('Escalation policy', request.params.id);
      return present(policy);
    },
  );

  app.delete(
    '/escalation-policies/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete an escalation policy; running escalations keep their copy, new events get none',
        params: Params,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      const deleted = await db.transaction().execute(async (trx) => {
        const gone = await deletePolicy(trx, request.params.id);
        if (gone) {
          await auditAdmin(trx, now, 'escalation_policy.deleted', ['escalation_policy', request.params.id]);
        }
        return gone;
      });
      if (!deleted) throw notFound('Escalation policy', request.params.id);
      reply.code(204);
      return null;
    },
  );
}
