import { auditAdmin } from '../audit/audit.repo.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, notFound } from '../errors.ts';
import { decodeCursor, Page, toPage } from '../http/pagination.ts';
import { security } from '../http/schemas.ts';
import { attemptsOf, findDelivery, listEndpointDeliveries, reopenDelivery } from './deliveries.repo.ts';
import { presentDelivery } from './endpoints.present.ts';
import { findEndpoint } from './endpoints.repo.ts';
import { Delivery, DeliveryParams, DeliveryQuery, EndpointParams } from './endpoints.schema.ts';

const tags = ['endpoints'];

/** The deliveries of one endpoint, with their attempts, and manual resend (registered by endpointsRoutes). */
export async function deliveriesRoutes(app: App, deps: Deps): Promise<void> {
  const admin = deps.auth.require('admin');
  const db = deps.store.db;

  app.get(
    '/endpoints/:id/deliveries',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "List an endpoint's deliveries with their attempts, newest first",
        params: EndpointParams,
        querystring: DeliveryQuery,
        response: { 200: Page(Delivery) },
      },
    },
    async (request) => {
      const { id } = request.params;
      await mustFind(deps, id);
      const limit = request.query.limit ?? 50;
      const rows = await listEndpointDeliveries(db, {
        endpointId: id,
        status: request.query.status,
        before: decodeCursor(request.query.cursor),
        limit: limit + 1,
      });
      const attempts = await attemptsOf(
        db,
        rows.slice(0, limit).map((r) => r.id),
      );
      return toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => presentDelivery(r, attempts.get(r.id) ?? []),
      );
    },
  );

  app.get(
    '/endpoints/:id/deliveries/:deliveryId',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Get one delivery with its attempts',
        params: DeliveryParams,
        response: { 200: Delivery },
      },
    },
    async (request) => {
      const { id, deliveryId } = request.params;
      await mustFind(deps, id);
      const row = await findDelivery(db, id, deliveryId);
      if (row === undefined) throw notFound('Delivery', deliveryId);
      const attempts = await attemptsOf(db, [row.id]);
      return presentDelivery(row, attempts.get(row.id) ?? []);
    },
  );

  app.post(
    '/endpoints/:id/deliveries/:deliveryId/resend',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: 'Send a finished delivery again now, with the same webhook-id',
        params: DeliveryParams,
        response: { 202: Delivery },
      },
    },
    async (request, reply) => {
      const { id, deliveryId } = request.params;
      const now = deps.clock.now();
      const row = await db.transaction().execute(async (trx) => {
        const endpoint = await findEndpoint(trx, id);
        if (endpoint === undefined) throw notFound('Endpoint', id);
        const delivery = await findDelivery(trx, id, deliveryId);
        if (delivery === undefined) throw notFound('Delivery', deliveryId);
        if (endpoint.status !== 'enabled') {
          throw new HeraldError('conflict', `Endpoint "${id}" is disabled; enable it before resending`);
        }
        const reopened = await reopenDelivery(trx, deliveryId, now);
        if (reopened === undefined)
          throw new HeraldError('conflict', `Delivery "${deliveryId}" is pending already`);
        await auditAdmin(trx, now, 'delivery.resend_requested', ['delivery', deliveryId], {
          endpoint_id: id,
          event_id: delivery.event_id,
          previous_status: delivery.status,
        });
        return reopened;
      });
      deps.store.notifier.publish('deliveries', '');
      const attempts = await attemptsOf(db, [row.id]);
      reply.code(202);
      return presentDelivery(row, attempts.get(row.id) ?? []);
    },
  );
}

async function mustFind(deps: Deps, id: string): Promise<void> {
  if ((await findEndpoint(deps.store.db, id)) === undefined) throw notFound('Endpoint', id);
}
