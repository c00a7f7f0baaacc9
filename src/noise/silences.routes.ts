import { Type } from 'typebox';
import { auditAdmin } from '../audit/audit.repo.ts';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { type FieldProblem, invalidMany, notFound } from '../errors.ts';
import { SEVERITIES } from '../events/events.schema.ts';
import { toTime } from '../http/formats.ts';
import { decodeCursor, PageQuery, toPage } from '../http/pagination.ts';
import { Deleted, security } from '../http/schemas.ts';
import { newId } from '../ids.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import {
  expireSilence,
  findSilence,
  insertSilence,
  listSilences,
  type Silence,
  silenceState,
  suppressedBy,
} from './silences.repo.ts';

const tags = ['noise'];
const HELD_LISTED = 100;

const Matchers = Type.Object(
  {
    types: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
        minItems: 1,
        maxItems: 100,
        description: 'Event type patterns (`erp.*`)',
      }),
    ),
    sources: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 100 }),
    ),
    severities: Type.Optional(Type.Array(Type.Enum(SEVERITIES), { minItems: 1 })),
    subject: Type.Optional(
      Type.String({ minLength: 1, maxLength: 500, description: 'The subject, exactly' }),
    ),
  },
  { additionalProperties: false, description: 'At least one; an event must match all that are given' },
);

const SilenceBody = Type.Object(
  {
    matchers: Matchers,
    starts_at: Type.Optional(Type.String({ format: 'date-time', description: 'Default: now' })),
    ends_at: Type.String({ format: 'date-time' }),
    comment: Type.String({ minLength: 1, maxLength: 1000, description: 'Why (a maintenance window, ...)' }),
  },
  { additionalProperties: false },
);

const State = Type.Union([Type.Literal('pending'), Type.Literal('active'), Type.Literal('expired')]);

const SilenceShape = Type.Object({
  id: Type.String(),
  matchers: Matchers,
  starts_at: Type.String({ format: 'date-time' }),
  ends_at: Type.String({ format: 'date-time' }),
  comment: Type.String(),
  created_by: Type.String(),
  state: State,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

const HeldEvent = Type.Object({
  event_id: Type.String(),
  type: Type.String(),
  source: Type.String(),
  severity: Type.String(),
  subject: Type.Union([Type.String(), Type.Null()]),
  title: Type.Union([Type.String(), Type.Null()]),
  recipients: Type.Integer({ description: 'How many people it would have notified' }),
  held_at: Type.String({ format: 'date-time' }),
});

/** The events a silence or inhibition held back: how many, and the latest of them. */
export const Held = Type.Object({
  count: Type.Integer(),
  items: Type.Array(HeldEvent, { description: `The latest ${HELD_LISTED}, newest first` }),
});

const SilenceDetail = Type.Object({ ...SilenceShape.properties, held: Held });

const Params = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

function present(silence: Silence, now: number) {
  return {
    id: silence.id,
    matchers: silence.matchers,
    starts_at: iso(silence.starts_at),
    ends_at: iso(silence.ends_at),
    comment: silence.comment,
    created_by: silence.created_by,
    state: silenceState(silence, now),
    created_at: iso(silence.created_at),
    updated_at: iso(silence.updated_at),
  };
}

/** The held-back events of a silence (or of an inhibition's parent event), as the API shows them. */
export async function presentHeld(db: Deps['store']['db'], byId: string) {
  const { total, items } = await suppressedBy(db, byId, HELD_LISTED);
  return {
    count: total,
    items: items.map((i) => ({
      event_id: i.event_id,
      type: i.type,
      source: i.source_id,
      severity: i.severity,
      subject: i.subject,
      title: i.title,
      recipients: Number(i.recipients),
      held_at: iso(i.at),
    })),
  };
}

/**
 * Silences (maintenance windows): between `starts_at` and `ends_at`, events matching the matchers notify
 * nobody. What they held back stays listed on the silence; deleting one ends it now and keeps it listed.
 */
export async function silencesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.post(
    '/silences',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Hold back notifications of matching events for a while (a maintenance window)',
        body: SilenceBody,
        response: { 201: SilenceShape },
      },
    },
    async (request, reply) => {
      const body = request.body;
      const now = deps.clock.now();
      const startsAt = body.starts_at === undefined ? now : toTime(body.starts_at, 'body.starts_at');
      const endsAt = toTime(body.ends_at, 'body.ends_at');
      const problems: FieldProblem[] = [];
      if (Object.keys(body.matchers).length === 0) {
        problems.push({
          field: 'body.matchers',
          message: 'must give at least one of types, sources, severities, subject',
        });
      }
      if (endsAt <= startsAt) problems.push({ field: 'body.ends_at', message: 'must be after starts_at' });
      else if (endsAt <= now) problems.push({ field: 'body.ends_at', message: 'must be in the future' });
      if (problems.length > 0) throw invalidMany(problems);
      const silence: Silence = {
        id: newId('sil', now),
        matchers: body.matchers,
        starts_at: startsAt,
        ends_at: endsAt,
        comment: body.comment,
        created_by: 'admin',
        created_at: now,
        updated_at: now,
      };
      await db.transaction().execute(async (trx) => {
        await insertSilence(trx, silence);
        await auditAdmin(trx, now, 'silence.created', ['silence', silence.id], body);
      });
      reply.code(201);
      return present(silence, now);
    },
  );

  app.get(
    '/silences',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Silences, newest first',
        querystring: Type.Object({ ...PageQuery, state: Type.Optional(State) }),
        response: {
          200: Type.Object({
            items: Type.Array(SilenceShape),
            next_cursor: Type.Union([Type.String(), Type.Null()]),
          }),
        },
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 50;
      const now = deps.clock.now();
      const rows = await listSilences(db, {
        state: request.query.state,
        before: decodeCursor(request.query.cursor),
        limit,
        now,
      });
      return toPage(
        rows,
        limit,
        (s) => s.id,
        (s) => present(s, now),
      );
    },
  );

  app.get(
    '/silences/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'A silence and the events it held back',
        params: Params,
        response: { 200: SilenceDetail },
      },
    },
    async (request) => {
      const silence = await findSilence(db, request.params.id);
      if (silence === undefined) throw notFound('Silence', request.params.id);
      return { ...present(silence, deps.clock.now()), held: await presentHeld(db, silence.id) };
    },
  );

  app.delete(
    '/silences/:id',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'End a silence now; it stays listed with what it held back',
        params: Params,
        response: { 204: Deleted },
      },
    },
    async (request, reply) => {
      const now = deps.clock.now();
      await db.transaction().execute(async (trx) => {
        const ended = await expireSilence(trx, request.params.id, now);
        if (ended === undefined) throw notFound('Silence', request.params.id);
        await auditAdmin(trx, now, 'silence.ended', ['silence', ended.id]);
      });
      return reply.code(204).send(null);
    },
  );
}
