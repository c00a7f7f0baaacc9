import { actionLinkUrl, LINK_TTL_MS } from '../actions/links.ts';
import { loadCallbackTargets } from '../actions/writeback.ts';
import { appendAudit } from '../audit/audit.repo.ts';
import type { Message } from '../channels/channel.ts';
import { isUserChannel } from '../channels/registry.ts';
import type { Context } from '../context.ts';
import type { DeliveryRow, DeviceRow, EndpointRow, EventRow, ProviderRow, UserRow } from '../db/tables.ts';
import { webhookPayload } from '../events/events.present.ts';
import { findEvents } from '../events/events.repo.ts';
import type { ExpressionError } from '../expressions.ts';
import { type Keys, signToken } from '../settings/keys.ts';
import { chooseTemplate, renderMessage } from '../templates/render.ts';
import { cancelDeliveries } from './deliveries.repo.ts';
import { findEndpoints } from './endpoints.repo.ts';
import { evaluateFilter, transformBody } from './expressions.ts';
import { loadUserTargets } from './targets.repo.ts';

/** Where a claimed delivery goes and what it carries. */
export type Target =
  | { kind: 'webhook'; endpoint: EndpointRow; body: string; headers: Record<string, string> }
  | { kind: 'chat'; endpoint: EndpointRow; message: Message }
  | {
      kind: 'user';
      channel: 'email' | 'sms';
      message: Message;
      address: string;
      /** The channel's enabled providers, in failover order. */
      providers: ProviderRow[];
    }
  | { kind: 'push'; message: Message; devices: DeviceRow[]; providers: ProviderRow[] }
  /** A response written back to its source (see src/actions/writeback.ts). */
  | { kind: 'callback'; url: string; secret: string; body: string }
  /** Nothing can be sent (no email address, no device, no provider): recorded as a failed attempt. */
  | { kind: 'none'; reason: string };

/** One claimed delivery with what sending it takes. */
export interface Job {
  delivery: DeliveryRow;
  target: Target;
  trigger: 'scheduled' | 'manual';
  /** Set when the attempt was made (a job may instead be given back unsent). */
  attempted: boolean;
  /** Resolves once the job is over: its outcome written, or the delivery given back unsent. */
  done: Promise<void>;
  finish: () => void;
}

/**
 * Turns claimed deliveries into jobs: loads what each needs (endpoint, event, notification, user, devices,
 * providers, templates) for the whole batch at once and renders each message. Deliveries whose endpoint is
 * gone or disabled (or listed in `disabling`), whose event is gone, or which the endpoint's filter rejects,
 * are cancelled instead, in one transaction with their audit entries.
 */
export async function prepareJobs(
  ctx: Context,
  keys: Keys,
  claimed: DeliveryRow[],
  disabling: ReadonlySet<string>,
): Promise<Job[]> {
  const { db } = ctx.store;
  const endpointIds = unique(claimed.flatMap((d) => (d.endpoint_id === null ? [] : [d.endpoint_id])));
  const endpoints = new Map((await findEndpoints(db, endpointIds)).map((e) => [e.id, e]));
  const events = new Map(
    (await findEvents(db, unique(claimed.map((d) => d.event_id)))).map((e) => [e.id, e]),
  );
  const users = await loadUserTargets(db, claimed);
  const callbacks = await loadCallbackTargets(db, claimed, events);
  const jobs: Job[] = [];
  const cancelled: { delivery: DeliveryRow; reason: string }[] = [];
  const bodies = new Map<string, string>();
  const tripped = new Map<string, Error>();
  for (const delivery of claimed) {
    const event = events.get(delivery.event_id);
    if (event === undefined) {
      cancelled.push({ delivery, reason: 'event deleted' });
      continue;
    }
    const callback = callbacks.get(delivery.id);
    if (callback !== undefined) {
      const target: Target =
        typeof callback === 'string' ? { kind: 'none', reason: callback } : { kind: 'callback', ...callback };
      jobs.push(newJob(delivery, target));
      continue;
    }
    if (delivery.endpoint_id === null) {
      jobs.push(newJob(delivery, userTarget(ctx, keys, delivery, event, users)));
      continue;
    }
    const endpoint = endpoints.get(delivery.endpoint_id);
    if (endpoint === undefined) {
      cancelled.push({ delivery, reason: 'endpoint deleted' });
      continue;
    }
    if (endpoint.status !== 'enabled' || disabling.has(endpoint.id)) {
      cancelled.push({ delivery, reason: 'endpoint disabled' });
      continue;
    }
    // A filter or transform that fails fails the delivery for good: it would fail again on the same event.
    const wanted = await guarded(tripped, `${endpoint.id} filter`, () => evaluateFilter(endpoint, event));
    if (wanted instanceof Error) {
      jobs.push(newJob(delivery, { kind: 'none', reason: `filter failed: ${wanted.message}` }));
    } else if (!wanted) {
      cancelled.push({ delivery, reason: "the endpoint's filter does not match" });
    } else if (endpoint.kind === 'webhook') {
      const body = await guarded(tripped, `${endpoint.id} transform`, () =>
        webhookBody(endpoint, event, bodies),
      );
      if (body instanceof Error) {
        jobs.push(newJob(delivery, { kind: 'none', reason: `transform failed: ${body.message}` }));
        continue;
      }
      const headers =
        endpoint.headers === null ? {} : (JSON.parse(endpoint.headers) as Record<string, string>);
      jobs.push(newJob(delivery, { kind: 'webhook', endpoint, body, headers }));
    } else {
      const { message } = renderMessage({
        event,
        notification: null,
        recipient: null,
        channel: endpoint.kind,
        template: chooseTemplate(users.templates, event.type, endpoint.kind, null),
        unsubscribeUrl: null,
        publicUrl: ctx.config.publicUrl,
      });
      jobs.push(newJob(delivery, { kind: 'chat', endpoint, message }));
    }
  }
  if (cancelled.length > 0) await cancel(ctx, cancelled);
  return jobs;
}

/**
 * Runs an endpoint's filter or transform (`expression` names it): its value, or the Error saying why it
 * failed. One that ran out of time is not run again in this batch, so that one slow expression cannot hold
 * up the deliveries of every endpoint.
 */
async function guarded<T>(
  tripped: Map<string, Error>,
  expression: string,
  run: () => Promise<T>,
): Promise<T | Error> {
  const earlier = tripped.get(expression);
  if (earlier !== undefined) return earlier;
  try {
    return await run();
  } catch (error) {
    const e = error as ExpressionError;
    if (e.timedOut) tripped.set(expression, new Error(`not run: earlier in this batch, ${e.message}`));
    return e;
  }
}

/** The body for a webhook endpoint: the full or thin payload, or the endpoint's transform of it. */
async function webhookBody(endpoint: EndpointRow, event: EventRow, shared: Map<string, string>) {
  if (endpoint.transform !== null) return JSON.stringify(await transformBody(endpoint, event));
  const key = `${event.id}\u0000${endpoint.payload}`;
  let body = shared.get(key);
  if (body === undefined) {
    const payload = webhookPayload(event);
    body = JSON.stringify(endpoint.payload === 'thin' ? thin(payload) : payload);
    shared.set(key, body);
  }
  return body;
}

/** A thin payload names the event; the receiver fetches the rest with `GET /v1/events/{id}`. */
function thin(payload: ReturnType<typeof webhookPayload>) {
  const { id, source, source_event_id, type, subject, time, severity } = payload.data;
  return {
    type: payload.type,
    timestamp: payload.timestamp,
    data: { id, source, source_event_id, type, subject, time, severity },
  };
}

function userTarget(
  ctx: Context,
  keys: Keys,
  delivery: DeliveryRow,
  event: EventRow,
  loaded: Awaited<ReturnType<typeof loadUserTargets>>,
): Target {
  const channel = delivery.channel;
  const notification = loaded.notifications.get(delivery.notification_id ?? '');
  const user = loaded.users.get(delivery.user_id ?? '');
  if (!isUserChannel(channel) || notification === undefined || user === undefined) {
    return { kind: 'none', reason: 'the notification or its recipient no longer exists' };
  }
  const providers = loaded.providers.filter((p) => p.channel === channel);
  const devices = loaded.devices.get(user.id) ?? [];
  const { message, templateError } = renderMessage({
    event,
    notification,
    recipient: user,
    channel,
    template: chooseTemplate(loaded.templates, event.type, channel, user.locale),
    unsubscribeUrl: channel === 'email' ? unsubscribeUrl(ctx, keys, user, event) : null,
    publicUrl: ctx.config.publicUrl,
  });
  if (channel === 'email' || channel === 'push') {
    // Email links open a confirmation page; a push service worker POSTs the same URL from its action button.
    const expiresAt = ctx.clock.now() + LINK_TTL_MS;
    message.actions = message.actions.map((a) => ({
      ...a,
      url: actionLinkUrl(ctx.config.publicUrl, keys, {
        notificationId: notification.id,
        userId: user.id,
        action: a.id,
        expiresAt,
      }),
    }));
    // The web push payload carries `data` but not action URLs: the service worker finds them here.
    if (channel === 'push') {
      for (const a of message.actions) message.data[`action_url.${a.id}`] = a.url!;
    }
  }
  if (templateError !== null) {
    ctx.log.warn(
      { delivery: delivery.id, error: templateError },
      'template failed; sent the plain rendering',
    );
  }
  if (channel === 'push') {
    // Web push needs no provider row (Herald holds the VAPID keys); FCM and APNs tokens need theirs.
    const usable = devices.filter((d) => d.kind === 'webpush' || providers.some((p) => p.kind === d.kind));
    if (usable.length === 0) {
      return {
        kind: 'none',
        reason:
          devices.length === 0 ? 'no push device registered' : 'no push provider for the registered devices',
      };
    }
    return { kind: 'push', message, devices: usable, providers };
  }
  const address = channel === 'email' ? user.email : user.phone;
  if (address === null)
    return {
      kind: 'none',
      reason: `no ${channel === 'email' ? 'email address' : 'phone number'} in the directory`,
    };
  if (providers.length === 0) return { kind: 'none', reason: `no ${channel} provider is configured` };
  return { kind: 'user', channel, message, address, providers };
}

/** The one-click unsubscribe link of non-critical email (RFC 8058): opts the user out of this event type by email. */
function unsubscribeUrl(ctx: Context, keys: Keys, user: UserRow, event: EventRow): string | null {
  if (event.severity === 'critical') return null;
  const token = signToken(keys.linkSecret, { u: user.id, c: event.type, ch: 'email' });
  return `${ctx.config.publicUrl}/v1/unsubscribe/${token}`;
}

async function cancel(ctx: Context, cancelled: { delivery: DeliveryRow; reason: string }[]) {
  const now = ctx.clock.now();
  await ctx.store.db.transaction().execute(async (trx) => {
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

function newJob(delivery: DeliveryRow, target: Target): Job {
  let finish!: () => void;
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  // A pending delivery with a completed_at was reopened by hand (see deliveries.repo.ts).
  const trigger = delivery.completed_at === null ? 'scheduled' : 'manual';
  return { delivery, target, trigger, attempted: false, done, finish };
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
