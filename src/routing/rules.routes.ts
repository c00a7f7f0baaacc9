import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid, notFound } from '../errors.ts';
import { assertEscalation } from '../escalation/check.ts';
import { pickEscalation } from '../escalation/options.ts';
import { NativeEvent } from '../events/events.schema.ts';
import { eventRow } from '../events/ingest.ts';
import { fromNative } from '../events/normalize.ts';
import { decodeCursor, encodeCursor, Page, PageQuery } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { explainNoiseStep } from '../noise/explain.ts';
import { findSource } from '../sources/sources.repo.ts';
import { explainEvent } from './explain.ts';
import { assertRuleReferences, checkRule, uniqueSpecs } from './rules.check.ts';
import { deleteRule, findRule, listRules, type Rule, upsertRule } from './rules.repo.ts';
import { Explanation, RuleBody, RuleParams, RuleShape } from './rules.schema.ts';

const tags = ['rules'];

function uniqueBySeverity(bySeverity: NonNullable<Rule['channels_by_severity']>) {
  return Object.fromEntries(
    Object.entries(bySeverity).map(([severity, specs]) => [severity, uniqueSpecs(specs)]),
  );
}

function presentRule({ escalation, actions, ...rule }: Rule) {
  return {
    ...rule,
    ...escalation,
    ...actions,
    created_at: iso(rule.created_at),
    updated_at: iso(rule.updated_at),
  };
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
        summary:
          'Create or replace a rule; the users, groups, roles and attributes it names must exist, its ' +
          'condition must parse',
        params: RuleParams,
        body: RuleBody,
        response: { 200: RuleShape, 201: RuleShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const bySeverity = body.channels_by_severity as Rule['channels_by_severity'];
      const rule: Omit<Rule, 'created_at' | 'updated_at'> = {
        id: request.params.id,
        name: body.name ?? null,
        position: body.position ?? 0,
        enabled: body.enabled ?? true,
        continue: body.continue ?? false,
        match: body.match,
        recipients: body.recipients,
        channels: uniqueSpecs(body.channels),
        ...(bySeverity === undefined ? {} : { channels_by_severity: uniqueBySeverity(bySeverity) }),
        ...(body.noise === undefined ? {} : { noise: body.noise }),
      };
      const escalation = pickEscalation(body);
      if (escalation !== undefined) rule.escalation = escalation;
      if (body.actions !== undefined) {
        rule.actions = {
          actions: body.actions,
          ...(body.response_policy === undefined ? {} : { response_policy: body.response_policy }),
        };
      } else if (body.response_policy !== undefined) {
        throw invalid('body.response_policy', 'only applies together with actions');
      }
      checkRule(rule);
      const now = deps.clock.now();
      const { saved, created } = await db.transaction().execute(async (trx) => {
        await assertRuleReferences(trx, rule.recipients);
        await assertEscalation(trx, rule.escalation, 'body.');
        const created = await upsertRule(trx, rule, now);
        await auditAdmin(trx, now, created ? 'rule.created' : 'rule.updated', ['rule', rule.id], rule);
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
        await auditAdmin(trx, now, 'rule.deleted', ['rule', id]);
      });
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/routing/explain',
    {
      preHandler: admin,
      // fromNative checks the event (naming each bad field); the schema only documents it.
      validatorCompiler: () => () => true,
      schema: {
        tags,
        security,
        summary: 'Explain how an event would be routed now; nothing is stored or sent',
        description: EXPLAIN,
        body: ExplainBody,
        response: { 200: Explanation },
      },
    },
    async (request) => {
      const body = request.body as Record<string, unknown> | null;
      const source = body !== null && typeof body === 'object' ? body['source'] : undefined;
      if (typeof source !== 'string' || source === '') {
        throw new HeraldError(
          'validation_failed',
          'body.source is required: the source that would publish it',
          {
            errors: [
              { field: 'body.source', message: 'is required: the source that would publish the event' },
            ],
          },
        );
      }
      const incoming = fromNative(body, source, undefined, 'body');
      if ((await findSource(db, source)) === undefined) {
        throw new HeraldError('unknown_reference', `Source "${source}" does not exist`, {
          extra: { unknown: { sources: [source] } },
        });
      }
      const now = deps.clock.now();
      // Decision steps as a dry run: noise control says whom it would hold back now, and why.
      return explainEvent(db, eventRow(incoming, now), now, [explainNoiseStep]);
    },
  );
}

const ExplainBody = Type.Object(
  {
    ...NativeEvent.properties,
    source: Type.String({ minLength: 1, maxLength: 64, description: 'The source that would publish it' }),
  },
  { additionalProperties: false },
);

const EXPLAIN = [
  'Takes an event as a source would publish it (native format) plus `source`, and runs the routing decision',
  'the router makes: `rules` lists every rule in order with whether it matched and, if not, `reason`',
  '(`type`, `source`, `severity`, `subject`, `condition_false`, `condition_error`, `stopped`, `disabled`)',
  'and `detail`; `recipients` lists everyone it would reach with their channels, the routes that reached them',
  '(`via`), channels skipped by preferences, and whether they would be notified now (`held` says why not);',
  '`unresolved` lists references that lead to nobody.',
].join(' ');

/** A rules cursor is `<position>:<id>` of the last rule shown. */
function parseCursor(cursor: string | undefined): { position: number; id: string } | undefined {
  const key = decodeCursor(cursor);
  if (key === undefined) return undefined;
  const match = /^(-?\d{1,7}):(.+)$/.exec(key);
  if (match === null) throw new HeraldError('bad_cursor');
  return { position: Number(match[1]), id: match[2]! };
}
