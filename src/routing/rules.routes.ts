import { Type } from 'typebox';
import { appendAudit } from '../audit/audit.repo.ts';
import { isUserChannel, RULE_CHANNELS } from '../channels/registry.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { assertReferencesExist } from '../directory/references.ts';
import { DirectoryId } from '../directory/users.schema.ts';
import { HeraldError, notFound } from '../errors.ts';
import { SEVERITIES } from '../events/events.schema.ts';
import { decodeCursor, encodeCursor, Page, PageQuery } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { TYPE_PATTERN_REGEX } from './patterns.ts';
import { deleteRule, findRule, listRules, type Rule, upsertRule } from './rules.repo.ts';

const tags = ['rules'];

const RuleId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });
const RuleParams = Type.Object({ id: RuleId });

const Match = Type.Object(
  {
    types: Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
      minItems: 1,
      maxItems: 100,
      description: 'Event type patterns; `*` matches any run of characters (`case.*`)',
    }),
    sources: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 }),
    ),
    severities: Type.Optional(Type.Array(Type.Enum(SEVERITIES), { minItems: 1 })),
  },
  { additionalProperties: false },
);

const Recipients = Type.Object(
  {
    users: Type.Optional(Type.Array(DirectoryId, { maxItems: 1000 })),
    groups: Type.Optional(Type.Array(DirectoryId, { maxItems: 100 })),
    from_data: Type.Optional(
      Type.Array(Type.String({ maxLength: 200, pattern: '^(subject|data(\\.[A-Za-z0-9_-]+)+)$' }), {
        maxItems: 20,
        description:
          'Where the event names its recipients: `subject`, or a path under `data.` such as `data.owner`',
      }),
    ),
  },
  { additionalProperties: false, description: 'At least one user, group or path' },
);

const ChannelSpec = Type.Union(
  [
    Type.String({ minLength: 1, maxLength: 64, description: '`inapp`, `email`, `push` or `sms`' }),
    Type.Object(
      {
        fallback: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
          minItems: 2,
          maxItems: 3,
          description:
            'Channels tried in turn: the next one only when the one before has no address or fails',
        }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'A channel, or `{"fallback": ["push", "email"]}`' },
);

const RuleBody = Type.Object(
  {
    name: Type.Optional(Type.Union([Type.Null(), Type.String({ maxLength: 200 })])),
    position: Type.Optional(
      Type.Integer({ minimum: -1_000_000, maximum: 1_000_000, default: 0, description: 'Lower runs first' }),
    ),
    enabled: Type.Optional(Type.Boolean({ default: true })),
    match: Match,
    recipients: Recipients,
    channels: Type.Array(ChannelSpec, { minItems: 1, maxItems: 10 }),
  },
  { additionalProperties: false },
);

const RuleShape = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  position: Type.Integer(),
  enabled: Type.Boolean(),
  match: Match,
  recipients: Recipients,
  channels: Type.Array(ChannelSpec),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

function presentRule(rule: Rule) {
  return { ...rule, created_at: iso(rule.created_at), updated_at: iso(rule.updated_at) };
}

/** Admin API for routing rules: which events reach whom, on which channels. */
export async function rulesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.put(
    '/rules/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Create or replace a rule; the users and groups it names must exist',
        params: RuleParams,
        body: RuleBody,
        response: { 200: RuleShape, 201: RuleShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      checkRecipients(body.recipients);
      checkChannels(body.channels);
      const rule = {
        id: request.params.id,
        name: body.name ?? null,
        position: body.position ?? 0,
        enabled: body.enabled ?? true,
        match: body.match,
        recipients: body.recipients,
        channels: uniqueSpecs(body.channels),
      };
      const now = deps.clock.now();
      const { saved, created } = await db.transaction().execute(async (trx) => {
        await assertReferencesExist(trx, {
          users: rule.recipients.users ?? [],
          groups: rule.recipients.groups ?? [],
        });
        const created = await upsertRule(trx, rule, now);
        await appendAudit(trx, {
          at: now,
          actor: 'admin',
          action: created ? 'rule.created' : 'rule.updated',
          subject_type: 'rule',
          subject_id: rule.id,
          data: rule,
        });
        return { saved: (await findRule(trx, rule.id))!, created };
      });
      reply.code(created ? 201 : 200);
      return presentRule(saved);
    },
  );

  app.get(
    '/rules',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'List rules in evaluation order (position, then id)',
        querystring: Type.Object(PageQuery),
        response: { 200: Page(RuleShape) },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listRules(db, { after: parseCursor(request.query.cursor), limit: limit + 1 });
      const page = rows.slice(0, limit);
      const last = page.at(-1);
      const more = rows.length > limit && last !== undefined;
      return {
        items: page.map(presentRule),
        next_cursor: more ? encodeCursor(`${last.position}:${last.id}`) : null,
      };
    },
  );

  app.get(
    '/rules/:id',
    {
      preHandler: admin,
      schema: { tags, security, summary: 'Get a rule', params: RuleParams, response: { 200: RuleShape } },
    },
    async (request) => {
      const rule = await findRule(db, request.params.id);
      if (rule === undefined) throw notFound('Rule', request.params.id);
      return presentRule(rule);
    },
  );

  app.delete(
    '/rules/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete a rule',
        params: RuleParams,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteRule(trx, id))) throw notFound('Rule', id);
        await appendAudit(trx, {
          at: now,
          actor: 'admin',
          action: 'rule.deleted',
          subject_type: 'rule',
          subject_id: id,
        });
      });
      return reply.code(204).send(null);
    },
  );
}

/** A rules cursor is `<position>:<id>` of the last rule shown. */
function parseCursor(cursor: string | undefined): { position: number; id: string } | undefined {
  const key = decodeCursor(cursor);
  if (key === undefined) return undefined;
  const match = /^(-?\d{1,7}):(.+)$/.exec(key);
  if (match === null) throw new HeraldError('bad_cursor');
  return { position: Number(match[1]), id: match[2]! };
}

function checkRecipients(recipients: { users?: string[]; groups?: string[]; from_data?: string[] }): void {
  const count =
    (recipients.users?.length ?? 0) + (recipients.groups?.length ?? 0) + (recipients.from_data?.length ?? 0);
  if (count === 0) {
    throw new HeraldError(
      'validation_failed',
      'body.recipients must name at least one user, group or from_data path',
      {
        errors: [
          { field: 'body.recipients', message: 'must name at least one user, group or from_data path' },
        ],
      },
    );
  }
}

function checkChannels(channels: Rule['channels']): void {
  const errors = channels.flatMap((spec, i) => {
    if (typeof spec === 'string') {
      return RULE_CHANNELS.includes(spec)
        ? []
        : [
            {
              field: `body.channels.${i}`,
              message: `"${spec}" is not a known channel (known: ${RULE_CHANNELS.join(', ')})`,
            },
          ];
    }
    return spec.fallback.flatMap((channel, j) =>
      isUserChannel(channel) && spec.fallback.indexOf(channel) === j
        ? []
        : [
            {
              field: `body.channels.${i}.fallback.${j}`,
              message: `"${channel}" cannot be part of a fallback (use email, push or sms, each once)`,
            },
          ],
    );
  });
  if (errors.length > 0) {
    throw new HeraldError('validation_failed', `${errors[0]!.field}: ${errors[0]!.message}`, { errors });
  }
}

function uniqueSpecs(channels: Rule['channels']): Rule['channels'] {
  const seen = new Set<string>();
  return channels.filter((spec) => {
    const key = JSON.stringify(spec);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
