import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { type Closed, closeSourceEvents, EVENT_ACTIONS, type EventAction } from '../actions/close.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalid } from '../errors.ts';

const ClosedEvent = Type.Object({
  id: Type.String(),
  source_event_id: Type.String(),
  resolution: Type.Union([Type.String(), Type.Null()]),
  changed: Type.Boolean({ description: 'False when it was already closed this way: nothing changed' }),
  notifications_resolved: Type.Integer(),
});
const Answer = Type.Object({ events: Type.Array(ClosedEvent) });

/**
 * Sources closing their own events: acknowledge, resolve or cancel an earlier event by Herald id
 * (`POST /events/{id}/{action}`) or by id or dedup key (`POST /events/actions`, like PagerDuty's
 * `event_action`). Every notification of it resolves, its escalation stops, nothing new is created.
 */
export async function eventActionsRoutes(app: App, deps: Deps): Promise<void> {
  const preHandler = deps.auth.require('source');

  app.post(
    '/events/actions',
    {
      preHandler,
      schema: {
        tags: ['events'],
        security: [{ bearer: [] }],
        summary: 'Acknowledge, resolve or cancel earlier events of this source, by id or dedup_key',
        body: Type.Object(
          {
            event_action: Type.Union(EVENT_ACTIONS.map((a) => Type.Literal(a))),
            id: Type.Optional(
              Type.String({ minLength: 1, maxLength: 200, description: "Herald's event id" }),
            ),
            dedup_key: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
          },
          { additionalProperties: false },
        ),
        response: { 200: Answer },
      },
    },
    async (request) => {
      const { event_action, id, dedup_key } = request.body;
      if ((id === undefined) === (dedup_key === undefined)) {
        throw invalid('body', 'give exactly one of id and dedup_key');
      }
      const by = id !== undefined ? { id } : { dedupKey: dedup_key! };
      return { events: await closeSourceEvents(deps, sourceOf(request), by, event_action) };
    },
  );

  for (const action of EVENT_ACTIONS) {
    app.post(
      `/events/:id/${action}`,
      {
        preHandler,
        schema: {
          tags: ['events'],
          security: [{ bearer: [] }],
          summary: `${capital(action)} an earlier event of this source`,
          params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 200 }) }),
          response: { 200: Answer },
        },
      },
      async (request): Promise<{ events: Closed[] }> => ({
        events: await closeSourceEvents(
          deps,
          sourceOf(request),
          { id: request.params.id },
          action as EventAction,
        ),
      }),
    );
  }
}

function sourceOf(request: FastifyRequest): string {
  const principal = request.principal;
  if (principal.kind !== 'source') throw new HeraldError('forbidden');
  return principal.sourceId;
}

const capital = (text: string) => text[0]!.toUpperCase() + text.slice(1);
