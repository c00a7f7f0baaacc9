import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { DeliveryRow, EndpointRow } from '../db/tables.ts';
import { webhookPayload } from '../events/events.present.ts';
import { cancelDeliveries, findEvents } from './deliveries.repo.ts';
import { findEndpoints } from './endpoints.repo.ts';

/** One claimed delivery with what sending it takes. */
export interface Job {
  delivery: DeliveryRow;
  endpoint: EndpointRow;
  /** The exact body to sign and send. */
  body: string;
  trigger: 'scheduled' | 'manual';
  /** Set when the request was made (a job may instead be given back unsent). */
  attempted: boolean;
  /** Resolves once the job is over: its outcome written, or the delivery given back unsent. */
  done: Promise<void>;
  finish: () => void;
}

/**
 * Turns claimed deliveries into jobs: loads their endpoints and events and builds each body once per event.
 * Deliveries whose endpoint is gone or disabled (or listed in `disabling`), or whose event is gone, are
 * cancelled instead, in one transaction with their audit entries.
 */
export async function prepareJobs(
  ctx: Context,
  claimed: DeliveryRow[],
  disabling: ReadonlySet<string>,
): Promise<Job[]> {
  const { db } = ctx.store;
  const endpointIds = unique(claimed.map((d) => d.endpoint_id!));
  const endpoints = new Map((await findEndpoints(db, endpointIds)).map((e) => [e.id, e]));
  const events = new Map(
    (await findEvents(db, unique(claimed.map((d) => d.event_id)))).map((e) => [e.id, e]),
  );
  const bodies = new Map<string, string>();
  const jobs: Job[] = [];
  const cancelled: { delivery: DeliveryRow; reason: string }[] = [];
  for (const delivery of claimed) {
    const endpoint = endpoints.get(delivery.endpoint_id!);
    const event = events.get(delivery.event_id);
    if (endpoint === undefined) cancelled.push({ delivery, reason: 'endpoint deleted' });
    else if (endpoint.status !== 'enabled' || disabling.has(endpoint.id)) {
      cancelled.push({ delivery, reason: 'endpoint disabled' });
    } else if (event === undefined) cancelled.push({ delivery, reason: 'event deleted' });
    else {
      let body = bodies.get(event.id);
      if (body === undefined) {
        body = JSON.stringify(webhookPayload(event));
        bodies.set(event.id, body);
      }
      jobs.push(newJob(delivery, endpoint, body));
    }
  }
  if (cancelled.length > 0) {
    const now = ctx.clock.now();
    await db.transaction().execute(async (trx) => {
      for (const reason of unique(cancelled.map((c) => c.reason))) {
        const ids = cancelled.filter((c) => c.reason === reason).map((c) => c.delivery.id);
        await cancelDeliveries(trx, ids, reason, now);
      }
      await appendAudit(
        trx,
        cancelled.map(({ delivery, reason }) => ({
          at: now,
          actor: 'system' as const,
          action: 'delivery.cancelled',
          subject_type: 'delivery',
          subject_id: delivery.id,
          data: { endpoint_id: delivery.endpoint_id, event_id: delivery.event_id, reason },
        })),
      );
    });
  }
  return jobs;
}

function newJob(delivery: DeliveryRow, endpoint: EndpointRow, body: string): Job {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // A pending delivery with a completed_at was reopened by hand (see deliveries.repo.ts).
  const trigger = delivery.completed_at === null ? 'scheduled' : 'manual';
  return { delivery, endpoint, body, trigger, attempted: false, done, finish };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
