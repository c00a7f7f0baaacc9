import type { BlockList } from 'node:net';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { responsesWithWriteBack } from '../actions/view.ts';
import { iso } from '../clock.ts';
import { listDeliveriesForEvent } from '../delivery/deliveries.repo.ts';
import { allowList, checkUrl } from '../delivery/ssrf.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, notFound, toProblem } from '../errors.ts';
import { presentEscalation } from '../escalation/escalation.ts';
import { installJsonParser } from '../http/json.ts';
import { decodeCursor, Page, PageQuery, toPage } from '../http/pagination.ts';
import { eventActionsRoutes } from './event-actions.routes.ts';
import { presentEvent } from './events.present.ts';
import { findEvent, listEvents, notificationsOfEvent, routingDecision } from './events.repo.ts';
import {
  Accepted,
  BatchAnswer,
  BatchBody,
  Event,
  EventDetail,
  PUBLISH_MODES,
  PublishBody,
  PublishHeaders,
} from './events.schema.ts';
import type { IngestResult } from './ingest.ts';
import {
  EventProblem,
  fromBinaryCloudEvent,
  fromCloudEvent,
  fromNative,
  type IncomingEvent,
} from './normalize.ts';

const STRUCTURED = 'application/cloudevents+json';
const BATCHED = 'application/cloudevents-batch+json';

/** Publishing (`POST /events`, `POST /events/batch`) and reading events back. */
export async function eventsRoutes(app: App, deps: Deps): Promise<void> {
  // JSON, CloudEvents' JSON media types included, is parsed as sent: normalize.ts checks each event on its
  // own (nesting, text), so that a bad item in a batch fails alone. Any other type is kept as bytes for binary
  // mode, where the body is the event's data in whatever format the source declared.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser(
    ['application/json', STRUCTURED, BATCHED],
    { parseAs: 'string' },
    app.getDefaultJsonParser('error', 'error'),
  );
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  const publish = { preHandler: deps.auth.require('source') };
  const allow = allowList(deps.config.outboundAllow);
  // The body is validated by the handler (per format, and item by item in a batch), not by Fastify;
  // the schema is still declared so the OpenAPI document describes it.
  const documentedOnly = () => () => true;

  app.post(
    '/events',
    {
      ...publish,
      validatorCompiler: documentedOnly,
      schema: {
        tags: ['events'],
        summary: 'Publish an event (native JSON, or CloudEvents 1.0 in binary or structured mode)',
        description: PUBLISH_MODES,
        security: [{ bearer: [] }],
        headers: PublishHeaders,
        body: PublishBody,
        response: { 202: Accepted },
      },
    },
    async (request, reply) => {
      const key = idempotencyKey(request);
      if (isBatchedCloudEvents(request))
        throw new HeraldError('unsupported_media_type', 'Send batches to /v1/events/batch');
      const incoming = toIncoming(request, key);
      await checkCallbackUrl(incoming, allow);
      const [result] = await deps.ingest.submit([incoming]);
      if (!result!.ok) throw result!.error;
      return reply.code(202).send(accepted(result!));
    },
  );

  app.post(
    '/events/batch',
    {
      ...publish,
      validatorCompiler: documentedOnly,
      schema: {
        tags: ['events'],
        summary: 'Publish up to 1,000 events; each is answered on its own',
        description:
          'Native events or CloudEvents (JSON format) as `{"events": [...]}` in `application/json`, or ' +
          'CloudEvents as a JSON array in `application/cloudevents-batch+json`. Answers 200 whatever became ' +
          'of each event: each item has the status it would have had on its own.',
        security: [{ bearer: [] }],
        body: BatchBody,
        response: { 200: BatchAnswer },
      },
    },
    async (request, reply) => {
      const { sourceId } = principalSource(request);
      const items = batchItems(request);
      const incoming: (IncomingEvent | HeraldError)[] = items.map((item, index) => {
        try {
          return isCloudEventJson(item) || request.headers['content-type']?.startsWith(BATCHED)
            ? fromCloudEvent(item, sourceId, undefined, `events.${index}`)
            : fromNative(item, sourceId, undefined, `events.${index}`);
        } catch (error) {
          if (error instanceof HeraldError) return error;
          throw error;
        }
      });
      for (const [index, e] of incoming.entries()) {
        // Most events name no callback: only those wait for a lookup.
        if (e instanceof HeraldError || e.callbackUrl === null) continue;
        const refused = await checkCallbackUrl(e, allow).catch((error: unknown) => error);
        if (refused instanceof HeraldError) incoming[index] = refused;
      }
      const valid = incoming.filter((e): e is IncomingEvent => !(e instanceof HeraldError));
      const stored = valid.length > 0 ? await deps.ingest.submit(valid) : [];
      let next = 0;
      const results = incoming.map((e, index) => {
        const result: IngestResult = e instanceof HeraldError ? { ok: false, error: e } : stored[next++]!;
        return result.ok
          ? { index, ...accepted(result), status: 202, state: result.status }
          : { index, status: result.error.status, error: toProblem(result.error) };
      });
      const rejected = results.filter((r) => r.status !== 202).length;
      return reply.code(200).send({ accepted: results.length - rejected, rejected, items: results });
    },
  );

  const read = { preHandler: deps.auth.require('admin', 'source') };

  app.get(
    '/events/:id',
    {
      ...read,
      schema: {
        tags: ['events'],
        summary: 'An event and what became of it: routing, notifications, deliveries',
        security: [{ bearer: [] }],
        params: Type.Object({ id: Type.String({ maxLength: 200 }) }),
        response: { 200: EventDetail },
      },
    },
    async (request) => {
      const event = await findEvent(deps.store.db, request.params.id);
      const principal = request.principal;
      if (event === undefined || (principal.kind === 'source' && principal.sourceId !== event.source_id)) {
        throw notFound('Event', request.params.id);
      }
      const [routing, notifications, deliveries, escalation] = await Promise.all([
        routingDecision(deps.store.db, event.id),
        notificationsOfEvent(deps.store.db, event.id),
        listDeliveriesForEvent(deps.store.db, event.id),
        presentEscalation(deps.store.db, event.id),
      ]);
      const responses = await responsesWithWriteBack(deps.store.db, event.id);
      return {
        ...presentEvent(event),
        routed_at: iso(event.routed_at),
        routing,
        notifications: notifications.map((n) => ({
          id: n.id,
          user_id: n.user_id,
          state: n.state,
          channels: JSON.parse(n.channels) as string[],
          created_at: iso(n.created_at),
          read_at: iso(n.read_at),
          resolved_at: iso(n.resolved_at),
          resolved_by: n.resolved_by,
        })),
        responses,
        write_back: responses.at(-1)?.write_back ?? null,
        deliveries,
        escalation,
      };
    },
  );

  app.get(
    '/events',
    {
      ...read,
      schema: {
        tags: ['events'],
        summary: 'Events, newest first (a source sees its own)',
        security: [{ bearer: [] }],
        querystring: Type.Object({
          ...PageQuery,
          source: Type.Optional(Type.String({ maxLength: 64 })),
          type: Type.Optional(Type.String({ maxLength: 200 })),
          status: Type.Optional(Type.Union([Type.Literal('pending'), Type.Literal('routed')])),
        }),
        response: { 200: Page(Event) },
      },
    },
    async (request) => {
      const { limit = 50, cursor, source, type, status } = request.query;
      const principal = request.principal;
      const rows = await listEvents(deps.store.db, {
        limit,
        before: decodeCursor(cursor),
        ...(principal.kind === 'source'
          ? { sourceId: principal.sourceId }
          : source
            ? { sourceId: source }
            : {}),
        ...(type ? { type } : {}),
        ...(status ? { status } : {}),
      });
      return toPage(rows, limit, (r) => r.id, presentEvent);
    },
  );

  // Their bodies are not events: parsed like every other route's.
  await app.register(async (scope) => {
    installJsonParser(scope);
    await eventActionsRoutes(scope as App, deps);
  });
}

/** Refuses an event whose write-back URL points at an address Herald may not reach (SSRF). */
async function checkCallbackUrl(event: IncomingEvent, allow: BlockList): Promise<void> {
  if (event.callbackUrl !== null) await checkUrl(event.callbackUrl, allow);
}

function principalSource(request: FastifyRequest): { sourceId: string } {
  const principal = request.principal;
  if (principal.kind !== 'source') throw new HeraldError('forbidden');
  return principal;
}

function idempotencyKey(request: FastifyRequest): string | undefined {
  const value = request.headers['idempotency-key'];
  if (value === undefined) return undefined;
  const key = Array.isArray(value) ? value[0]! : value;
  if (key === '' || key.length > 200) {
    throw new HeraldError('validation_failed', 'Idempotency-Key must be 1 to 200 characters', {
      errors: [{ field: 'header.idempotency-key', message: 'must be 1 to 200 characters' }],
    });
  }
  return key;
}

const isBatchedCloudEvents = (request: FastifyRequest) =>
  request.headers['content-type']?.startsWith(BATCHED) ?? false;

function isCloudEventJson(value: unknown): boolean {
  return value !== null && typeof value === 'object' && 'specversion' in value;
}

/** Picks the format from the request: structured CloudEvent, binary CloudEvent (`ce-*` headers), or native. */
function toIncoming(request: FastifyRequest, key: string | undefined): IncomingEvent {
  const { sourceId } = principalSource(request);
  const contentType = request.headers['content-type'];
  if (contentType?.startsWith(STRUCTURED)) return fromCloudEvent(request.body, sourceId, key);
  if (request.headers['ce-specversion'] !== undefined) {
    return fromBinaryCloudEvent(request.headers, request.body as Buffer | object, contentType, sourceId, key);
  }
  if (!/^application\/json\b/i.test(contentType ?? '')) {
    throw new HeraldError(
      'unsupported_media_type',
      'Send application/json (native), application/cloudevents+json, or a binary-mode CloudEvent with ce-* headers',
    );
  }
  return fromNative(request.body, sourceId, key);
}

function batchItems(request: FastifyRequest): unknown[] {
  const body = request.body;
  if (isBatchedCloudEvents(request)) {
    if (!Array.isArray(body))
      throw new EventProblem('validation_failed', 'A CloudEvents batch is a JSON array');
    if (body.length === 0 || body.length > 1000) {
      throw new HeraldError('validation_failed', 'A batch holds 1 to 1,000 events');
    }
    return body;
  }
  if (!/^application\/json\b/i.test(request.headers['content-type'] ?? '')) {
    throw new HeraldError(
      'unsupported_media_type',
      'Send application/json or application/cloudevents-batch+json',
    );
  }
  const events =
    body !== null && typeof body === 'object' ? (body as { events?: unknown }).events : undefined;
  if (!Array.isArray(events)) {
    throw new HeraldError('validation_failed', 'body.events must be an array of events', {
      errors: [{ field: 'body.events', message: 'must be an array of events' }],
    });
  }
  if (events.length === 0 || events.length > 1000) {
    throw new HeraldError('validation_failed', 'body.events holds 1 to 1,000 events', {
      errors: [{ field: 'body.events', message: 'must hold 1 to 1,000 events' }],
    });
  }
  return events;
}

function accepted(result: Extract<IngestResult, { ok: true }>) {
  return {
    id: result.id,
    source_event_id: result.externalId,
    duplicate: result.duplicate,
    status: result.status,
  };
}
