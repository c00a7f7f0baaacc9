import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ManualClock } from '../src/clock.ts';
import type { DeliveryRow } from '../src/db/tables.ts';
import { afterAttempt } from '../src/delivery/outcomes.ts';
import { isValidWebhookSecret, newWebhookSecret, retryAfter, signWebhook } from '../src/delivery/webhook.ts';
import { createSource, publishEvent, uniqueId } from './factories.ts';
import {
  ENGINES,
  routeAll,
  startHerald,
  type TestHerald,
  type TestHeraldOptions,
  waitFor,
} from './helpers.ts';
import { type ReceivedRequest, startReceiver } from './receiver.ts';

/*
 * The webhook dispatcher against real receivers. Tests that control time run without the background workers,
 * route with `router.runOnce()`, send with `dispatcher.runOnce()` and move a ManualClock instead of sleeping.
 */

interface Setup {
  h: TestHerald;
  key: string;
}

async function setup(
  t: test.TestContext,
  engine: (typeof ENGINES)[number],
  options: TestHeraldOptions = {},
): Promise<Setup> {
  const h = await startHerald(t, engine, options);
  const source = await createSource(h);
  return { h, key: source.api_key };
}

async function putEndpoint(h: TestHerald, url: string, extra: Record<string, unknown> = {}) {
  const id = uniqueId('ep');
  const res = await h.api('PUT', `/v1/endpoints/${id}`, { url, types: ['*'], ...extra });
  assert.equal(res.status, 201, res.text);
  return res.body as { id: string; secret: string };
}

function publish({ h, key }: Setup, type = 'case.created'): Promise<string> {
  return publishEvent(h, key, { type, title: 'Case 7 was created', data: { case: 7 } });
}

/** A delivery as `GET /v1/endpoints/{id}/deliveries` shows it. */
interface ApiDelivery {
  id: string;
  event_id: string;
  status: string;
  attempt_count: number;
  next_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  completed_at: string | null;
  attempts: {
    outcome: string;
    trigger: string;
    status_code: number | null;
    response: string | null;
    error: string | null;
  }[];
}

async function deliveriesOf(h: TestHerald, endpointId: string): Promise<ApiDelivery[]> {
  const res = await h.api('GET', `/v1/endpoints/${endpointId}/deliveries`);
  assert.equal(res.status, 200, res.text);
  return res.body.items;
}

/** The newest delivery of an endpoint. */
async function firstDelivery(h: TestHerald, endpointId: string): Promise<ApiDelivery> {
  const [delivery] = await deliveriesOf(h, endpointId);
  assert.ok(delivery, `endpoint ${endpointId} has no delivery`);
  return delivery;
}

function verify(secret: string, request: ReceivedRequest): unknown {
  return new Webhook(secret).verify(request.body, request.headers as Record<string, string>);
}

test('signWebhook matches the Svix test vector', () => {
  const signature = signWebhook(
    'whsec_plJ3nmyCDGBKInavdOK15jsl',
    'msg_loFOjxBNrRLzqYUf',
    1731705121,
    '{"event_type":"ping","data":{"success":true}}',
  );
  assert.equal(signature, 'v1,rAvfW3dJ/X/qxhsaXPOyyCGmRKsaKWcsNccKXlIktD0=');
});

test('generated secrets are whsec_ with 32 random bytes, and only well-formed secrets are valid', () => {
  const secret = newWebhookSecret();
  assert.match(secret, /^whsec_/);
  assert.equal(Buffer.from(secret.slice(6), 'base64').length, 32);
  assert.ok(isValidWebhookSecret(secret));
  assert.ok(isValidWebhookSecret(`whsec_${Buffer.alloc(24, 7).toString('base64')}`));
  assert.ok(!isValidWebhookSecret(`whsec_${Buffer.alloc(23, 7).toString('base64')}`), 'too short');
  assert.ok(!isValidWebhookSecret(`whsec_${Buffer.alloc(65, 7).toString('base64')}`), 'too long');
  assert.ok(!isValidWebhookSecret(Buffer.alloc(32, 7).toString('base64')), 'no prefix');
  assert.ok(!isValidWebhookSecret('whsec_not base64 at all!!!!!!!!!!!!!!!!!'), 'not base64');
});

test('Retry-After is read as seconds or as an HTTP date, and capped at 24 hours', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfter('120', now), 120_000);
  assert.equal(retryAfter('Thu, 01 Jan 2026 00:02:00 GMT', now), 120_000);
  assert.equal(retryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  assert.equal(retryAfter('9999999', now), 24 * 3600 * 1000);
  assert.equal(retryAfter('soon', now), null);
  assert.equal(retryAfter(undefined, now), null);
});

test('a failed attempt is retried after the schedule with ±10% jitter, and is dead once the schedule is used up', () => {
  const now = 1_000_000;
  const delivery = { attempt_count: 0, next_attempt_at: now } as DeliveryRow;
  const failed = {
    outcome: 'retry',
    statusCode: 500,
    latencyMs: 1,
    response: null,
    error: 'HTTP 500',
    retryAfterMs: null,
    addressGone: false,
    providerFault: false,
    providerMessageId: null,
  } as const;
  for (let i = 0; i < 50; i++) {
    const state = afterAttempt(delivery, failed, [100, 200], now);
    assert.equal(state.status, 'pending');
    assert.ok(
      state.next_attempt_at >= now + 90_000 && state.next_attempt_at <= now + 110_000,
      String(state.next_attempt_at),
    );
  }
  const later = afterAttempt(delivery, { ...failed, retryAfterMs: 3_600_000 }, [100, 200], now);
  assert.equal(later.next_attempt_at, now + 3_600_000);
  const last = afterAttempt({ ...delivery, attempt_count: 2 }, failed, [100, 200], now);
  assert.equal(last.status, 'dead');
  assert.equal(last.attempt_count, 3);
});

for (const engine of ENGINES) {
  test(`[${engine}] an event is delivered as a signed webhook that standardwebhooks verifies`, async (t) => {
    const s = await setup(t, engine);
    const receiver = await startReceiver(t);
    const endpoint = await putEndpoint(s.h, receiver.url);
    const eventId = await publish(s);
    const [request] = await receiver.waitForRequests(1);
    const payload = verify(endpoint.secret, request!) as {
      type: string;
      timestamp: string;
      data: { id: string };
    };
    assert.equal(payload.type, 'case.created');
    assert.equal(payload.data.id, eventId);
    assert.equal(request!.headers['webhook-id'], `msg_${eventId.slice(4)}`);
    assert.equal(request!.headers['content-type'], 'application/json');
    assert.equal(request!.headers['user-agent'], 'Herald-Webhooks/1.0');

    const delivery = await waitFor(async () => {
      const items = await deliveriesOf(s.h, endpoint.id);
      return items[0]?.status === 'succeeded' ? items[0] : undefined;
    });
    assert.equal(delivery.event_id, eventId);
    assert.equal(delivery.attempt_count, 1);
    assert.equal(delivery.last_status_code, 200);
    assert.equal(delivery.attempts.length, 1);
    assert.equal(delivery.attempts[0]?.outcome, 'succeeded');
    assert.equal(delivery.attempts[0]?.trigger, 'scheduled');
    assert.equal(delivery.attempts[0]?.response, 'ok');
    const metrics = await s.h.app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /herald_delivery_attempts_total\{channel="webhook",outcome="succeeded"\} 1/);
  });

  test(`[${engine}] a retry after a 500 reuses the webhook-id with a fresh timestamp, and both attempts are recorded`, async (t) => {
    const clock = new ManualClock(Date.now());
    const s = await setup(t, engine, {
      clock,
      workers: false,
      env: { HERALD_WEBHOOK_RETRY_SCHEDULE: '10,10' },
    });
    const receiver = await startReceiver(t);
    receiver.reply({ status: 500, body: 'database down' });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);

    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    let delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.status, 'pending');
    assert.equal(delivery.last_status_code, 500);
    const wait = Date.parse(delivery.next_attempt_at ?? '') - clock.now();
    assert.ok(wait >= 9_000 && wait <= 11_000, `next attempt in ${wait} ms`);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 0, 'not due yet');

    clock.advance(12_000);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.status, 'succeeded');
    assert.equal(delivery.attempt_count, 2);
    assert.deepEqual(
      delivery.attempts.map((a) => [a.outcome, a.status_code, a.response]),
      [
        ['retry', 500, 'database down'],
        ['succeeded', 200, 'ok'],
      ],
    );
    const [first, second] = receiver.requests;
    assert.equal(first!.headers['webhook-id'], second!.headers['webhook-id']);
    assert.equal(
      Number(second!.headers['webhook-timestamp']) - Number(first!.headers['webhook-timestamp']),
      12,
    );
    verify(endpoint.secret, first!);
    verify(endpoint.secret, second!);
  });

  test(`[${engine}] a 429 with Retry-After is not retried before the receiver asked`, async (t) => {
    const clock = new ManualClock();
    const s = await setup(t, engine, { clock, workers: false });
    const receiver = await startReceiver(t);
    receiver.reply({ status: 429, headers: { 'retry-after': '120' } });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);

    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    const delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.last_status_code, 429);
    assert.ok(Date.parse(delivery.next_attempt_at ?? '') >= clock.now() + 120_000);
    clock.advance(60_000);
    assert.equal(
      await s.h.workers.dispatcher.runOnce(),
      0,
      'the default schedule says 5 s, Retry-After says 120 s',
    );
    clock.advance(61_000);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    assert.equal(receiver.requests.length, 2);
  });

  test(`[${engine}] a 410 disables the endpoint and cancels its other pending deliveries`, async (t) => {
    const clock = new ManualClock();
    const s = await setup(t, engine, {
      clock,
      workers: false,
      env: { HERALD_WEBHOOK_ENDPOINT_CONCURRENCY: '1' },
    });
    const receiver = await startReceiver(t);
    receiver.always({ status: 410 });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await publish(s);
    await routeAll(s.h);

    assert.equal(await s.h.workers.dispatcher.runOnce(), 1, 'one at a time for this endpoint');
    const ep = await s.h.api('GET', `/v1/endpoints/${endpoint.id}`);
    assert.equal(ep.body.status, 'disabled');
    assert.equal(ep.body.disabled_reason, 'gone');
    const deliveries = await deliveriesOf(s.h, endpoint.id);
    assert.deepEqual(deliveries.map((d) => d.status).sort(), ['cancelled', 'dead']);
    assert.equal(deliveries.find((d) => d.status === 'dead')?.attempts[0]?.outcome, 'failed');
    assert.equal(await s.h.workers.dispatcher.runOnce(), 0);
    assert.equal(receiver.requests.length, 1);
    const audit = await s.h.api('GET', `/v1/audit?subject_id=${endpoint.id}`);
    assert.ok(audit.body.items.some((e: { action: string }) => e.action === 'endpoint.disabled'));

    await publish(s);
    await routeAll(s.h);
    assert.equal(
      (await deliveriesOf(s.h, endpoint.id)).length,
      2,
      'a disabled endpoint gets no new deliveries',
    );
  });

  test(`[${engine}] the receiver can stop a message or disable its endpoint with webhook-delivery`, async (t) => {
    const clock = new ManualClock();
    const s = await setup(t, engine, { clock, workers: false });
    const receiver = await startReceiver(t);
    receiver.reply({ status: 400, headers: { 'webhook-delivery': 'abort-message' } });
    receiver.reply({ status: 200, headers: { 'webhook-delivery': 'disable' } });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);
    await s.h.workers.dispatcher.runOnce();
    const aborted = await firstDelivery(s.h, endpoint.id);
    assert.equal(aborted.status, 'dead');
    assert.equal((await s.h.api('GET', `/v1/endpoints/${endpoint.id}`)).body.status, 'enabled');

    await publish(s);
    await routeAll(s.h);
    await s.h.workers.dispatcher.runOnce();
    const delivered = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivered.status, 'succeeded');
    const ep = await s.h.api('GET', `/v1/endpoints/${endpoint.id}`);
    assert.equal(ep.body.status, 'disabled');
    assert.equal(ep.body.disabled_reason, 'receiver_requested');
  });

  test(`[${engine}] a delivery is dead once the retry schedule is used up`, async (t) => {
    const clock = new ManualClock();
    const s = await setup(t, engine, { clock, workers: false, env: { HERALD_WEBHOOK_RETRY_SCHEDULE: '1' } });
    const receiver = await startReceiver(t, { status: 503 });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    clock.advance(2_000);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    clock.advance(3_600_000);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 0);
    const delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.status, 'dead');
    assert.equal(delivery.attempt_count, 2);
    assert.equal(delivery.next_attempt_at, null);
    assert.ok(delivery.completed_at !== null);
    const audit = await s.h.api('GET', `/v1/audit?subject_id=${delivery.id}`);
    assert.deepEqual(audit.body.items.map((e: { action: string }) => e.action).sort(), [
      'delivery.dead',
      'delivery.retry_scheduled',
    ]);
  });

  test(`[${engine}] a manual resend sends the same webhook-id again, recorded as a manual attempt`, async (t) => {
    const s = await setup(t, engine, { workers: false });
    const receiver = await startReceiver(t);
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);
    await s.h.workers.dispatcher.runOnce();
    const done = await firstDelivery(s.h, endpoint.id);
    assert.equal(done.status, 'succeeded');

    const resend = await s.h.api('POST', `/v1/endpoints/${endpoint.id}/deliveries/${done.id}/resend`);
    assert.equal(resend.status, 202, resend.text);
    assert.equal(resend.body.status, 'pending');
    assert.equal(resend.body.completed_at, null);
    const again = await s.h.api('POST', `/v1/endpoints/${endpoint.id}/deliveries/${done.id}/resend`);
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'conflict');

    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    const one = await s.h.api('GET', `/v1/endpoints/${endpoint.id}/deliveries/${done.id}`);
    assert.equal(one.body.status, 'succeeded');
    assert.equal(one.body.attempt_count, 2);
    assert.deepEqual(
      one.body.attempts.map((a: { trigger: string }) => a.trigger),
      ['scheduled', 'manual'],
    );
    assert.equal(receiver.requests[0]!.headers['webhook-id'], receiver.requests[1]!.headers['webhook-id']);

    await s.h.api('PUT', `/v1/endpoints/${endpoint.id}`, { url: receiver.url, types: ['*'], enabled: false });
    const disabled = await s.h.api('POST', `/v1/endpoints/${endpoint.id}/deliveries/${done.id}/resend`);
    assert.equal(disabled.status, 409);
    const missing = await s.h.api('POST', `/v1/endpoints/${endpoint.id}/deliveries/dlv_nope/resend`);
    assert.equal(missing.status, 404);
  });

  test(`[${engine}] a receiver that never answers times out and the attempt records why`, async (t) => {
    const s = await setup(t, engine, { workers: false, env: { HERALD_WEBHOOK_TIMEOUT: '1' } });
    const receiver = await startReceiver(t, { hold: true });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);
    assert.equal(await s.h.workers.dispatcher.runOnce(), 1);
    receiver.release();
    const delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.status, 'pending');
    assert.equal(delivery.last_status_code, null);
    assert.match(delivery.last_error ?? '', /timeout/);
    assert.equal(delivery.attempts[0]?.outcome, 'retry');
    assert.equal(delivery.attempts[0]?.status_code, null);
    assert.match(delivery.attempts[0]?.error ?? '', /timeout/);
  });

  test(`[${engine}] a redirect is not followed and counts as a failed attempt`, async (t) => {
    const s = await setup(t, engine, { workers: false });
    const elsewhere = await startReceiver(t);
    const receiver = await startReceiver(t, { status: 302, headers: { location: elsewhere.url } });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await routeAll(s.h);
    await s.h.workers.dispatcher.runOnce();
    const delivery = await firstDelivery(s.h, endpoint.id);
    assert.equal(delivery.status, 'pending');
    assert.equal(delivery.last_status_code, 302);
    assert.match(delivery.last_error ?? '', /redirect/);
    assert.equal(elsewhere.requests.length, 0);
  });

  test(`[${engine}] a slow endpoint does not hold up deliveries to a fast one`, async (t) => {
    const s = await setup(t, engine, { env: { HERALD_WEBHOOK_ENDPOINT_CONCURRENCY: '2' } });
    const slow = await startReceiver(t, { hold: true });
    const fast = await startReceiver(t);
    const slowEndpoint = await putEndpoint(s.h, slow.url);
    const fastEndpoint = await putEndpoint(s.h, fast.url);
    for (let i = 0; i < 8; i++) await publish(s);

    await fast.waitForRequests(8);
    assert.ok(
      slow.requests.length <= 2,
      `slow endpoint got ${slow.requests.length} requests, its limit is 2`,
    );
    slow.always({});
    slow.release();
    await slow.waitForRequests(8);
    for (const endpoint of [fastEndpoint, slowEndpoint]) {
      await waitFor(async () =>
        (await deliveriesOf(s.h, endpoint.id)).every((d) => d.status === 'succeeded'),
      );
    }
  });

  test(`[${engine}] a delivery that waited too long for a free slot is given back unsent, not sent after its lease`, async (t) => {
    const clock = new ManualClock(Date.now());
    const s = await setup(t, engine, {
      clock,
      workers: false,
      env: { HERALD_WEBHOOK_ENDPOINT_CONCURRENCY: '1' },
    });
    const receiver = await startReceiver(t, { hold: true });
    const endpoint = await putEndpoint(s.h, receiver.url);
    await publish(s);
    await publish(s);
    await routeAll(s.h);

    // With one slot, the claim takes the next round too: one is sent, one waits for the slot.
    const run = s.h.workers.dispatcher.runOnce();
    await receiver.waitForRequests(1);
    clock.advance(6_000);
    receiver.always({});
    receiver.release();
    assert.equal(await run, 1);
    const deliveries = await deliveriesOf(s.h, endpoint.id);
    assert.deepEqual(deliveries.map((d) => [d.status, d.attempt_count]).sort(), [
      ['pending', 0],
      ['succeeded', 1],
    ]);
    assert.equal(receiver.requests.length, 1);

    assert.equal(await s.h.workers.dispatcher.runOnce(), 1, 'given back, it is due again at once');
    assert.equal(receiver.requests.length, 2);
  });

  test(`[${engine}] two Heralds on one database deliver each delivery exactly once`, async (t) => {
    const s = await setup(t, engine);
    const other = await startHerald(t, engine, { store: s.h.store });
    assert.ok(other.workers.dispatcher !== s.h.workers.dispatcher);
    const receiver = await startReceiver(t);
    const endpoint = await putEndpoint(s.h, receiver.url);
    const count = 60;
    for (let i = 0; i < count; i++) await publish(s);

    await waitFor(async () => {
      const res = await s.h.api('GET', `/v1/endpoints/${endpoint.id}/deliveries?status=succeeded&limit=500`);
      return res.body.items.length === count;
    }, 30_000);
    const ids = receiver.requests.map((r) => r.headers['webhook-id']);
    assert.equal(ids.length, count);
    assert.equal(new Set(ids).size, count);
  });
}
