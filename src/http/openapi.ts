import type { SwaggerOptions } from '@fastify/swagger';
import type { Config } from '../config.ts';
import { ERRORS } from '../errors.ts';

/** The OpenAPI document's frame; paths come from the route schemas. Served at `/openapi.json`, shown at `/docs`. */
export function openApiDocument(config: Config): SwaggerOptions {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Herald',
        version: '0.1.0',
        description:
          'Herald is a notification hub: sources publish events, Herald routes them to people (in-app inbox, ' +
          'real-time stream) and to other systems (signed webhooks). Every error is RFC 9457 ' +
          '`application/problem+json` with a stable `code`; the codes are listed under `x-error-codes`.',
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearer: {
            type: 'http',
            scheme: 'bearer',
            description: 'An admin token, a source API key (publishing), or a user token (the /v1/me inbox)',
          },
        },
        schemas: {
          Problem: {
            type: 'object',
            required: ['type', 'title', 'status', 'code', 'detail'],
            properties: {
              type: { type: 'string' },
              title: { type: 'string' },
              status: { type: 'integer' },
              code: { type: 'string', enum: Object.keys(ERRORS) },
              detail: { type: 'string' },
              instance: { type: 'string' },
              errors: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: { field: { type: 'string' }, message: { type: 'string' } },
                },
              },
            },
          },
        },
      },
      tags: [
        { name: 'sources', description: 'Systems that publish events, and their API keys' },
        { name: 'directory', description: 'Users and groups' },
        { name: 'rules', description: 'Routing rules' },
        { name: 'events', description: 'Publishing events and following what became of them' },
        { name: 'inbox', description: "A user's own notifications and real-time stream" },
        { name: 'endpoints', description: 'Outbound webhooks and chat (Slack, Teams) to other systems' },
        { name: 'deliveries', description: 'Deliveries on every channel: dead letters and replay' },
        { name: 'providers', description: 'Email, SMS and push providers, in failover order' },
        { name: 'devices', description: 'Web push subscriptions and mobile device tokens' },
        {
          name: 'preferences',
          description: 'What each user receives on which channel; one-click unsubscribe',
        },
        { name: 'templates', description: 'LiquidJS templates per event type, channel and locale' },
        {
          name: 'announcements',
          description: 'Messages to a segment of the directory, scheduled and expiring',
        },
        { name: 'audit', description: 'The audit log' },
        { name: 'operations', description: 'Health, readiness and metrics' },
      ],
      'x-error-codes': Object.fromEntries(Object.entries(ERRORS).map(([code, e]) => [code, e])),
    } as SwaggerOptions extends { openapi?: infer O } ? O : never,
    transformObject: (documents) =>
      'openapiObject' in documents ? withProblemResponses(documents.openapiObject) : documents.swaggerObject,
  } as SwaggerOptions;
}

type Operations = Record<string, Record<string, { responses?: Record<string, unknown> }>>;

/** Every operation can fail with a problem document: say so once for all of them, as `4XX` and `5XX`. */
function withProblemResponses<T extends { paths?: unknown }>(document: T): T {
  const problem = {
    description: 'An RFC 9457 problem document; `code` is one of `x-error-codes`',
    content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
  };
  for (const operations of Object.values((document.paths ?? {}) as Operations)) {
    for (const operation of Object.values(operations)) {
      operation.responses = { ...operation.responses, '4XX': problem, '5XX': problem };
    }
  }
  return document;
}
