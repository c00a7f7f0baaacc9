import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { invalid, notFound } from '../errors.ts';
import { SEVERITIES } from '../events/events.schema.ts';
import { decodeCursor, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { newId } from '../ids.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import {
  deleteInhibition,
  findInhibition,
  type Inhibition,
  insertInhibition,
  listInhibitions,
  type Parent,
  parentsOf,
} from './inhibitions.repo.ts';
import { KEY_PATH_REGEX } from './options.ts';
import { Held, presentHeld } from './silences.routes.ts';
import { DURATION_PATTERN, parseDuration } from './time.ts';

const tags = ['noise'];
const MAX_EXPIRES_MS = 30 * 86_400_000;
const PARENTS_LISTED = 20;

const Types = Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
  minItems: 1,
  maxItems: 100,
});
const Sources = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 });

const ParentMatcher = Type.Object(
  { types: Types, sources: Type.Optional(Sources) },
  { additionalProperties: false, description: 'Events that open a parent (`erp.down`)' },
);
const ChildMatcher = Type.Object(
  {
    types: Types,
    sources: Type.Optional(Sources),
    severities: Type.Optional(Type.Array(Type.Enum(SEVERITIES), { minItems: 1 })),
  },
  {
    additionalProperties: false,
    description: 'Events held back while a parent is open (`integration.failed`)',
  },
);
const Equal = Type.Array(Type.String({ maxLength: 200, pattern: KEY_PATH_REGEX }), {
  maxItems: 10,
  description: 'Paths (`data.system`, `subject`, `source`) whose values parent and child must share',
});

const InhibitionBody = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    parent: ParentMatcher,
    children: ChildMatcher,
    equal: Type.Optional(Equal),
    expires_in: Type.Optional(
      Type.String({
        pattern: DURATION_PATTERN,
        maxLength: 12,
        default: '1h',
        description: 'How long a parent stays open unless resolved first (at most 30d)',
      }),
    ),
  },
  { additionalProperties: false },
);

const InhibitionShape = Type.Object({
  id: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  parent: ParentMatcher,
  children: ChildMatcher,
  equal: Equal,
  expires_in: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const ParentShape = Type.Object({
  event_id: Type.String(),
  event_type: Type.String(),
  values: Type.Array(Type.String(), { description: 'The values at `equal`, in order' }),
  state: Type.Union([Type.Literal('open'), Type.Literal('resolved'), Type.Literal('expired')]),
  opened_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  resolved_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
  resolved_by: Type.Union([Type.String(), Type.Null()]),
  held: Held,
});

const InhibitionDetail = Type.Object({
  ...InhibitionShape.properties,
  parents: Type.Array(ParentShape, {
    description: `The latest ${PARENTS_LISTED} parent events, newest first`,
  }),
});

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

/** `3600000` as `1h`: the largest unit that divides it. */
function durationText(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ] as const) {
    if (ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function present(inhibition: Inhibition) {
  return {
    id: inhibition.id,
    name: inhibition.name,
    parent: inhibition.parent,
    children: inhibition.children,
    equal: inhibition.equal,
    expires_in: durationText(inhibition.expires_in),
    created_at: iso(inhibition.created_at),
    updated_at: iso(inhibition.updated_at),
  };
}

function parentState(parent: Parent, now: number): 'open' | 'resolved' | 'expired' {
  if (parent.resolved_at !== null) return 'resolved';
  return parent.expires_at > now ? 'open' : 'expired';
}

/**
 * Inhibitions: while a parent event is open (`erp.down`, until `expires_in` has passed or a resolve arrives:
 * an event of type `<parent type>.resolved`, or of the parent type with `data.status` "resolved", with the
 * same values at `equal`), child events with those values notify nobody and are listed under the parent.
 */
export async function inhibitionsRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.post(
    '/inhibitions',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'While a parent event is open, hold back the child events it explains',
        body: InhibitionBody,
        response: { 201: InhibitionShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const expiresIn = parseDuration(body.expires_in ?? '1h')!;
      if (expiresIn > MAX_EXPIRES_MS) throw invalid('body.expires_in', 'must be at most 30d');
      const now = deps.clock.now();
      const inhibition: Inhibition = {
        id: newId('inh', now),
        name: body.name ?? null,
        parent: body.parent,
        children: body.children,
        equal: body.equal ?? [],
        expires_in: expiresIn,
        created_at: now,
        updated_at: now,
      };
      await db.transaction().execute(async (trx) => {
        await insertInhibition(trx, inhibition);
        await auditAdmin(trx, now, 'inhibition.created', ['inhibition', inhibition.id], body);
      });
      reply.code(201);
      return present(inhibition);
    },
  );

  app.get(
    '/inhibitions',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Inhibitions, newest first',
        querystring: Type.Object(PageQuery),
        response: {
          200: Type.Object({
            items: Type.Array(InhibitionShape),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const rows = await listInhibitions(db, decodeCursor(request.query.cursor), limit);
      return toPage(rows, limit, (i) => i.id, present);
    },
  );

  app.get(
    '/inhibitions/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'An inhibition, its latest parent events and what each held back',
        params: Params,
        response: { 200: InhibitionDetail },
      },
    },
    async (request) => {
      const inhibition = await findInhibition(db, request.params.id);
      if (inhibition === undefined) throw notFound('Inhibition', request.params.id);
      const now = deps.clock.now();
      const parents = await parentsOf(db, inhibition.id, PARENTS_LISTED);
      const shown = [];
      for (const parent of parents) {
        shown.push({
          event_id: parent.event_id,
          event_type: parent.event_type,
          values: JSON.parse(parent.key) as string[],
          state: parentState(parent, now),
          opened_at: iso(parent.opened_at),
          expires_at: iso(parent.expires_at),
          resolved_at: iso(parent.resolved_at),
          resolved_by: parent.resolved_by,
          held: await presentHeld(db, parent.event_id),
        });
      }
      return { ...present(inhibition), parents: shown };
    },
  );

  app.delete(
    '/inhibitions/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Delete an inhibition; its open parents hold nothing back any more',
        params: Params,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const { id } = request.params;
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await deleteInhibition(trx, id))) throw notFound('Inhibition', id);
        await auditAdmin(trx, now, 'inhibition.deleted', ['inhibition', id]);
      });
      return reply.code(204).send(null);
    },
  );
}
