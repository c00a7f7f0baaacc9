import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { ManualClock } from '../src/clock.ts';
import { createGroup, createSource, createUser, publishEvent, uniqueId, userToken } from './factories.ts';
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
 * Delivery reliability end to end, through the public API and real HTTP receivers: the circuit breaker and the
 * alerts it raises, dead letters and replay, ordered endpoints, slow endpoints, filters and transforms, and
 * rate limits. Time is a ManualClock; the workers are off and each test routes and sends by hand, so every
 * count is exact.
 */

interface Setup {
  h: TestHerald;
  key: string;
  clock: ManualClock;
}

async function setup(
  t: test.TestContext,
  engine: (typeof ENGINES)[number],
  env: Record<string, string> = {},
  options: TestHeraldOptions & { start?: number } = {},
): Promise<Setup> {
  const clock = new ManualClock(options.start);
  const h = await startHerald(t, engine, { clock, workers: false, env, ...options });
  const source = await createSource(h);
  return { h, key: source.api_key, clock };
}

interface ApiEndpoint {
  id: string;
  secret: string;
  status: string;
  disabled_reason: string | null;
  headers: Record<string, string>;
  rate_limit: number | null;
  circuit: { state: string; failures: number; failing_since: string | null; paused_until: string | null };
}

/** Creates an endpoint for `case.*` events (so Herald's own `herald.*` alerts do not go to it). */
async function putEndpoint(h: TestHerald, url: string, extra: Record<string, unknown> = {}) {
  const id = uniqueId('ep');
  const res = await h.api('PUT', `/v1/endpoints/${id}`, { url, types: ['case.*'], ...extra });
  assert.equal(res.status, 201, res.text);
  return res.body as ApiEndpoint;
}

async function getEndpoint(h: TestHerald, id: string): Promise<ApiEndpoint> {
  const res = await h.api('GET', `/v1/endpoints/${id}`);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

function publish({ h, key }: Setup, fields: Record<string, unknown> = {}): Promise<string> {
  return publishEvent(h, key, { type: 'case.created', title: 'Case created', data: { case: 7 }, ...fields });
}

const send = (h: TestHerald) => h.workers.dispatcher.runOnce();

/** A delivery as `GET /v1/deliveries` shows it. */
interface ApiDelivery {
  id: string;
  event_id: string;
  channel: string;
  endpoint_id: string | null;
  status: string;
  attempt_count: number;
  last_status_code: number | null;
  last_error: string | null;
  attempts: { outcome: string; trigger: string; status_code: number | null; error: string | null }[];
}

async function deliveries(h: TestHerald, query: string): Promise<ApiDelivery[]> {
  const res = await h.api('GET', `/v1/deliveries?limit=200&${query}`);
  assert.equal(res.status, 200, res.text);
  return res.body.items;
}

/** Herald's own events of one type, newest first. */
async function heraldEvents(h: TestHerald, type: string) {
  const res = await h.api('GET', `/v1/events?source=herald&type=${type}`);
  assert.equal(res.status, 200, res.text);
  return res.body.items as {
    type: string;
    severity: string;
    subject: string;
    title: string;
    data: {
      integration: { kind: string; id: string; url: string | null };
      error_code: string | null;
      status_code: number | null;
      retry_status: string;
      failures: number;
      failing_since: string | null;
    };
  }[];
}

/** An operator who gets Herald's alerts (`herald.*`) in their inbox. */
async function operator(h: TestHerald) {
  const user = await createUser(h);
  const group = uniqueId('operators');
  await createGroup(h, group, [user.id]);
  const rule = await h.api('PUT', `/v1/rules/${uniqueId('alerts')}`, {
    match: { types: ['herald.*'] },
    recipients: { groups: [group] },
    channels: ['inapp'],
  });
  assert.equal(rule.status, 201, rule.text);
  const token = await userToken(h, user.id);
  return {
    inbox: async () => {
      const res = await h.api('GET', '/v1/me/notifications', undefined, token);
      assert.equal(res.status, 200, res.text);
      return res.body.items as { type: string; severity: string; title: string; summary: string | null }[];
    },
  };
}

function verify(secret: string, request: ReceivedRequest): unknown {
  return new Webhook(secret).verify(request.body, request.headers as Record<string, string>);
}

const caseOf = (request: ReceivedRequest) =>
  (JSON.parse(request.body) as { data: { data: { n: number } } }).data.data.n;

for (const engine of ENGINES) {
  test(`[${engine}] a failing endpoint is paused, the operators hear of it, one probe after the pause closes it and the backlog flows`, async (t) => {
    const s = await setup(t, engine, {
      HERALD_BREAKER_THRESHOLD: '3',
      HERALD_BREAKER_PAUSE: '60',
      HERALD_WEBHOOK_RETRY_SCHEDULE: '5,5,5,5,5',
    });
    const { h, clock } = s;
    const ops = await operator(h);
    const broken = await startReceiver(t, { status: 500, body: 'upstream down' });
    const healthy = await startReceiver(t);
    // A token in the query, as some receivers take one: the alert, an event like any other, must not carry it.
    const failing = await putEndpoint(h, `${broken.url}/hook?code=s3cret-in-url`);
    const other = await putEndpoint(h, healthy.url);
    for (let n = 1; n <= 3; n++) await publish(s, { data: { n } });
    await routeAll(h);

    assert.equal(await send(h), 6);
    assert.equal(broken.requests.length, 3);
    const paused = await getEndpoint(h, failing.id);
    assert.equal(paused.status, 'enabled');
    assert.equal(paused.circuit.state, 'paused');
    assert.equal(paused.circuit.failures, 3);
    assert.equal(paused.circuit.failing_since, new Date(clock.now()).toISOString());
    assert.equal(paused.circuit.paused_until, new Date(clock.now() + 60_000).toISOString());
    assert.equal((await getEndpoint(h, other.id)).circuit.state, 'closed');

    const [alert, ...more] = await heraldEvents(h, 'herald.endpoint.paused');
    assert.equal(more.length, 0, 'one alert for the pause');
    assert.equal(alert!.severity, 'error');
    assert.equal(alert!.subject, `endpoint/${failing.id}`);
    assert.equal(alert!.data.integration.id, failing.id);
    assert.equal(alert!.data.integration.url, `${broken.url}/hook?********`);
    assert.equal(alert!.data.error_code, 'HTTP 500');
    assert.equal(alert!.data.status_code, 500);
    assert.equal(alert!.data.failures, 3);
    assert.match(alert!.data.retry_status, /^paused until 2026-01-01T00:01:00\.000Z/);
    await routeAll(h);
    const [notice] = await ops.inbox();
    assert.equal(notice?.type, 'herald.endpoint.paused');
    assert.match(notice?.title ?? '', new RegExp(`Endpoint ${failing.id} \\(webhook\\) is failing`));
    assert.match(notice?.summary ?? '', /last error: HTTP 500/);

    // While paused nothing goes to the failing endpoint, due or not; the other endpoint still gets its own.
    for (let n = 4; n <= 5; n++) await publish(s, { data: { n } });
    await routeAll(h);
    clock.advance(10_000);
    assert.equal(await send(h), 2);
    assert.equal(healthy.requests.length, 5);
    assert.equal(broken.requests.length, 3);
    clock.advance(30_000);
    assert.equal(await send(h), 0);
    assert.equal(broken.requests.length, 3);

    // The pause is over: exactly one probe; it succeeds and closes the circuit.
    broken.always({ status: 200 });
    clock.advance(21_000);
    assert.equal((await getEndpoint(h, failing.id)).circuit.state, 'probing');
    assert.equal(await send(h), 1, 'one probe');
    assert.equal(broken.requests.length, 4);
    const closed = await getEndpoint(h, failing.id);
    assert.equal(closed.circuit.state, 'closed');
    assert.equal(closed.circuit.failures, 0);
    assert.equal(closed.circuit.paused_until, null);
    const [recovered] = await heraldEvents(h, 'herald.endpoint.recovered');
    assert.equal(recovered?.severity, 'info');
    assert.equal(recovered?.data.integration.id, failing.id);

    assert.equal(await send(h), 4, 'the backlog');
    assert.deepEqual(broken.requests.slice(3).map(caseOf).sort(), [1, 2, 3, 4, 5]);
    const all = await deliveries(h, `endpoint_id=${failing.id}`);
    assert.deepEqual(
      all.map((d) => d.status),
      Array(5).fill('succeeded'),
    );
    await routeAll(h);
    assert.deepEqual(
      (await ops.inbox()).map((n) => n.type),
      ['herald.endpoint.recovered', 'herald.endpoint.paused'],
    );
  });

  test(`[${engine}] an endpoint failing for longer than HERALD_BREAKER_DISABLE_AFTER is disabled and its pending deliveries cancelled`, async (t) => {
    const s = await setup(t, engine, {
      HERALD_BREAKER_THRESHOLD: '2',
      HERALD_BREAKER_PAUSE: '10',
      HERALD_BREAKER_DISABLE_AFTER: '60',
      HERALD_WEBHOOK_RETRY_SCHEDULE: Array(20).fill('5').join(','),
    });
    const { h, clock } = s;
    const ops = await operator(h);
    const broken = await startReceiver(t, { status: 503 });
    const endpoint = await putEndpoint(h, broken.url);
    for (let n = 1; n <= 4; n++) await publish(s, { data: { n } });
    await routeAll(h);
    const start = clock.now();

    // Pauses of 10, 20 and 40 s, each ended by one failed probe; the probe after 60 s of failing disables.
    const pauses: number[] = [];
    for (let round = 0; round < 10; round++) {
      const attempted = await send(h);
      const state = await getEndpoint(h, endpoint.id);
      if (state.status === 'disabled') break;
      assert.equal(attempted, round === 0 ? 4 : 1);
      assert.equal(state.circuit.state, 'paused');
      const until = Date.parse(state.circuit.paused_until!);
      pauses.push(until - clock.now());
      clock.advance(until - clock.now() + 1_000);
    }
    // The first round fails 4 at once: the circuit opens at the 2nd; the 2 after it were already under way
    // and do not count as failed probes.
    assert.deepEqual(pauses, [10_000, 20_000, 40_000]);
    assert.equal(broken.requests.length, 4 + 3);
    assert.ok(clock.now() - start >= 60_000);

    const disabled = await getEndpoint(h, endpoint.id);
    assert.equal(disabled.status, 'disabled');
    assert.equal(disabled.disabled_reason, 'failing');
    const [alert] = await heraldEvents(h, 'herald.endpoint.disabled');
    assert.equal(alert?.severity, 'critical');
    assert.equal(alert?.data.error_code, 'HTTP 503');
    assert.equal(alert?.data.failing_since, new Date(start).toISOString());
    assert.match(alert?.data.retry_status ?? '', /disabled/);
    const all = await deliveries(h, `endpoint_id=${endpoint.id}`);
    assert.deepEqual(
      all.map((d) => [d.status, d.last_error]),
      Array(4).fill(['cancelled', 'endpoint disabled']),
    );
    const audit = await h.api('GET', `/v1/audit?subject_id=${endpoint.id}&action=endpoint.disabled`);
    assert.equal(audit.body.items.length, 1, 'the disabling is recorded once');
    assert.deepEqual(audit.body.items[0].data, {
      reason: 'failing',
      failures: 5,
      failing_since: new Date(start).toISOString(),
      paused_until: null,
      last_error: 'HTTP 503',
      deliveries_cancelled: 4,
    });
    clock.advance(3_600_000);
    assert.equal(await send(h), 0);
    assert.equal(broken.requests.length, 7);

    await routeAll(h);
    const inbox = await ops.inbox();
    assert.deepEqual(
      inbox.map((n) => [n.type, n.severity]),
      [
        ['herald.endpoint.disabled', 'critical'],
        ['herald.endpoint.paused', 'error'],
      ],
    );
  });

  test(`[${engine}] deliveries that keep failing become dead letters, and replay sends them again, one or many`, async (t) => {
    const s = await setup(t, engine, {
      HERALD_WEBHOOK_RETRY_SCHEDULE: '10',
      HERALD_BREAKER_THRESHOLD: '100',
    });
    const { h, clock } = s;
    const a = await startReceiver(t, { status: 500, body: 'a is down' });
    const b = await startReceiver(t, { status: 500 });
    const chat = await startReceiver(t, { status: 500, body: 'no_service' });
    const epA = await putEndpoint(h, a.url);
    const epB = await putEndpoint(h, b.url);
    const slack = await putEndpoint(h, chat.url, { kind: 'slack' });

    /** Publishes one event and fails it twice everywhere: the schedule (one retry) is used up. */
    const failOnce = async (n: number) => {
      await publish(s, { data: { n } });
      await routeAll(h);
      assert.equal(await send(h), 3);
      clock.advance(11_000);
      assert.equal(await send(h), 3);
      clock.advance(3_600_000);
      assert.equal(await send(h), 0);
    };
    await failOnce(1);
    const secondBatch = new Date(clock.now()).toISOString();
    await failOnce(2);

    const dead = await deliveries(h, 'status=dead');
    assert.equal(dead.length, 6);
    for (const d of dead) {
      assert.equal(d.attempt_count, 2);
      assert.equal(d.last_status_code, 500);
      assert.deepEqual(
        d.attempts.map((x) => [x.trigger, x.outcome, x.status_code]),
        [
          ['scheduled', 'retry', 500],
          ['scheduled', 'retry', 500],
        ],
      );
    }
    const [deadA1] = (await deliveries(h, `status=dead&endpoint_id=${epA.id}`)).reverse();
    assert.equal(deadA1?.last_error, 'HTTP 500');
    assert.equal(deadA1?.channel, 'webhook');
    const deadSlack = await deliveries(h, 'status=dead&channel=slack');
    assert.deepEqual(
      deadSlack.map((d) => [d.endpoint_id, d.last_error]),
      [
        [slack.id, 'no_service'],
        [slack.id, 'no_service'],
      ],
    );
    assert.equal((await deliveries(h, 'status=dead&channel=webhook')).length, 4);
    assert.equal((await deliveries(h, `status=dead&since=${secondBatch}`)).length, 3);

    for (const r of [a, b, chat]) r.always({ status: 200 });
    const one = await h.api('POST', `/v1/deliveries/${deadA1!.id}/replay`);
    assert.equal(one.status, 202, one.text);
    assert.equal(one.body.status, 'pending');
    assert.equal(await send(h), 1);
    assert.equal(a.requests.length, 5);
    const replayed = await h.api('GET', `/v1/deliveries/${deadA1!.id}`);
    assert.equal(replayed.body.status, 'succeeded');
    assert.equal(replayed.body.attempt_count, 3);
    assert.deepEqual(
      replayed.body.attempts.map((x: { trigger: string; outcome: string }) => [x.trigger, x.outcome]),
      [
        ['scheduled', 'retry'],
        ['scheduled', 'retry'],
        ['manual', 'succeeded'],
      ],
    );
    assert.equal(caseOf(a.requests[4]!), 1);
    assert.equal(a.requests[4]!.headers['webhook-id'], a.requests[0]!.headers['webhook-id']);

    const byEndpoint = await h.api('POST', '/v1/deliveries/replay', { endpoint_id: epB.id });
    assert.equal(byEndpoint.status, 202, byEndpoint.text);
    assert.equal(byEndpoint.body.replayed, 2);
    assert.equal(await send(h), 2);
    assert.equal(b.requests.length, 6);
    assert.deepEqual(b.requests.slice(4).map(caseOf).sort(), [1, 2]);

    const byChannel = await h.api('POST', '/v1/deliveries/replay', { channel: 'webhook' });
    assert.equal(byChannel.body.replayed, 1, 'the dead webhook delivery left: case 2 to endpoint A');
    assert.equal(await send(h), 1);
    assert.deepEqual(a.requests.slice(5).map(caseOf), [2]);
    assert.equal(chat.requests.length, 4, 'slack deliveries stay dead');

    const bySince = await h.api('POST', '/v1/deliveries/replay', { since: secondBatch });
    assert.equal(bySince.body.replayed, 1, 'the second Slack message only');
    assert.equal(await send(h), 1);
    assert.equal(chat.requests.length, 5);
    const [stillDead, ...none] = await deliveries(h, 'status=dead');
    assert.equal(none.length, 0);
    assert.equal(stillDead?.endpoint_id, slack.id);

    const off = await h.api('PUT', `/v1/endpoints/${slack.id}`, {
      url: chat.url,
      types: ['case.*'],
      kind: 'slack',
      enabled: false,
    });
    assert.equal(off.status, 200, off.text);
    const refused = await h.api('POST', `/v1/deliveries/${stillDead!.id}/replay`);
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'conflict');
    const bulk = await h.api('POST', '/v1/deliveries/replay', {});
    assert.deepEqual(bulk.body, { replayed: 0, ids: [] });
    assert.equal(await send(h), 0);
    assert.equal(chat.requests.length, 5);
    assert.equal((await deliveries(h, 'status=dead'))[0]?.id, stillDead!.id);
  });

  test(`[${engine}] an ordered endpoint gets one delivery at a time in creation order, and a failing one holds back the rest`, async (t) => {
    const s = await setup(t, engine, { HERALD_WEBHOOK_RETRY_SCHEDULE: '10,10' });
    const { h, clock } = s;
    const receiver = await startReceiver(t);
    receiver.reply({ status: 500 });
    const endpoint = await putEndpoint(h, receiver.url, { ordered: true });
    assert.equal(endpoint.circuit.state, 'closed');
    for (let n = 1; n <= 3; n++) await publish(s, { data: { n } });
    await routeAll(h);

    assert.equal(await send(h), 1);
    assert.deepEqual(receiver.requests.map(caseOf), [1]);
    clock.advance(5_000);
    assert.equal(await send(h), 0, 'case 2 and 3 wait for case 1');
    clock.advance(6_000);
    assert.equal(await send(h), 1);
    assert.equal(await send(h), 1);
    assert.equal(await send(h), 1);
    assert.equal(await send(h), 0);
    assert.deepEqual(receiver.requests.map(caseOf), [1, 1, 2, 3]);
    const all = await deliveries(h, `endpoint_id=${endpoint.id}`);
    assert.deepEqual(
      all.map((d) => [d.status, d.attempt_count]),
      [
        ['succeeded', 1],
        ['succeeded', 1],
        ['succeeded', 2],
      ],
    );
  });

  test(`[${engine}] a receiver down for ten minutes gets everything once back, in order, each once`, async (t) => {
    const s = await setup(t, engine);
    const { h, clock } = s;
    const receiver = await startReceiver(t, { status: 503 });
    const endpoint = await putEndpoint(h, receiver.url, { ordered: true });
    const start = clock.now();
    let backAt: number | undefined;
    // One event a minute for ten minutes, and a dispatcher pass every 10 s as its loop would make. Then the
    // receiver is back; the retry schedule (5 s, 5 min, 30 min, ...) of the head decides when it hears so.
    for (let round = 0; ; round++) {
      assert.ok(round < 2_000, 'everything is delivered within a few hours');
      const minute = (clock.now() - start) / 60_000;
      if (Number.isInteger(minute) && minute < 10) {
        await publish(s, { data: { n: minute + 1 } });
        await routeAll(h);
      }
      if (minute >= 10 && backAt === undefined) {
        receiver.always({ status: 200 });
        backAt = receiver.requests.length;
      }
      assert.ok((await send(h)) <= 1, 'one at a time');
      if (
        backAt !== undefined &&
        (await deliveries(h, `endpoint_id=${endpoint.id}&status=pending`)).length === 0
      ) {
        break;
      }
      clock.advance(10_000);
    }
    const cases = receiver.requests.map(caseOf);
    assert.deepEqual(cases.slice(backAt), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'each once, in order, once back');
    assert.ok(
      cases.slice(0, backAt).every((c) => c === 1),
      'only the head was tried while the receiver was down',
    );
    const all = await deliveries(h, `endpoint_id=${endpoint.id}`);
    assert.equal(all.length, 10);
    assert.ok(all.every((d) => d.status === 'succeeded'));
    assert.equal((await getEndpoint(h, endpoint.id)).circuit.state, 'closed');
  });

  test(`[${engine}] a slow endpoint does not hold back another endpoint's deliveries`, async (t) => {
    const s = await setup(t, engine, { HERALD_WEBHOOK_ENDPOINT_CONCURRENCY: '2' });
    const { h } = s;
    const slow = await startReceiver(t, { hold: true });
    const fast = await startReceiver(t);
    const slowEndpoint = await putEndpoint(h, slow.url);
    const fastEndpoint = await putEndpoint(h, fast.url);
    for (let n = 1; n <= 3; n++) await publish(s, { data: { n } });
    await routeAll(h);

    const first = send(h);
    await fast.waitForRequests(3);
    await slow.waitForRequests(2);
    await waitFor(async () =>
      (await deliveries(h, `endpoint_id=${fastEndpoint.id}`)).every((d) => d.status === 'succeeded'),
    );
    for (let n = 4; n <= 6; n++) await publish(s, { data: { n } });
    await routeAll(h);
    assert.equal(await send(h), 3, 'the fast endpoint is served while the slow one holds both its slots');
    assert.deepEqual(fast.requests.map(caseOf), [1, 2, 3, 4, 5, 6]);
    assert.equal(slow.requests.length, 2, 'two in flight, its concurrency');

    slow.always({});
    slow.release();
    assert.equal(await first, 6);
    assert.equal(await send(h), 3);
    assert.deepEqual(slow.requests.map(caseOf).sort(), [1, 2, 3, 4, 5, 6]);
    const slowOnes = await deliveries(h, `endpoint_id=${slowEndpoint.id}`);
    assert.ok(slowOnes.every((d) => d.status === 'succeeded' && d.attempt_count === 1));
  });

  test(`[${engine}] filters pick events, transforms shape the signed body, custom headers arrive, thin payloads name the event`, async (t) => {
    const s = await setup(t, engine, {}, { start: Date.now() });
    const { h } = s;
    const pager = await startReceiver(t);
    const desk = await startReceiver(t);
    const light = await startReceiver(t);
    const critical = await putEndpoint(h, pager.url, { filter: 'data.severity = "critical"' });
    const serviceDesk = await putEndpoint(h, desk.url, {
      transform:
        '{"short_description": data.title, "urgency": data.severity = "critical" ? 1 : 3, "correlation_id": data.id}',
      headers: { 'X-Api-Key': 'desk-key-1', 'X-Tenant': 'acme' },
    });
    assert.deepEqual((await getEndpoint(h, serviceDesk.id)).headers, {
      'X-Api-Key': '********',
      'X-Tenant': '********',
    });
    const thin = await putEndpoint(h, light.url, { payload: 'thin' });
    const ids: Record<string, string> = {};
    for (const severity of ['info', 'critical', 'warning']) {
      ids[severity] = await publish(s, { severity, title: `Disk ${severity} on db-1`, data: { n: 1 } });
    }
    await routeAll(h);
    assert.equal(await send(h), 1 + 3 + 3);

    assert.equal(pager.requests.length, 1);
    const paged = verify(critical.secret, pager.requests[0]!) as { data: { id: string; severity: string } };
    assert.equal(paged.data.id, ids['critical']);
    const skipped = (await deliveries(h, `endpoint_id=${critical.id}`)).filter(
      (d) => d.status !== 'succeeded',
    );
    assert.deepEqual(
      skipped.map((d) => [d.event_id, d.status, d.last_error, d.attempt_count]).sort(),
      [
        [ids['info'], 'cancelled', "the endpoint's filter does not match", 0],
        [ids['warning'], 'cancelled', "the endpoint's filter does not match", 0],
      ].sort(),
    );

    const incidents = desk.requests.map((r) => {
      assert.equal(r.headers['x-api-key'], 'desk-key-1');
      assert.equal(r.headers['x-tenant'], 'acme');
      assert.equal(r.headers['content-type'], 'application/json');
      return verify(serviceDesk.secret, r);
    });
    assert.deepEqual(
      incidents,
      ['info', 'critical', 'warning'].map((severity) => ({
        short_description: `Disk ${severity} on db-1`,
        urgency: severity === 'critical' ? 1 : 3,
        correlation_id: ids[severity],
      })),
    );
    assert.equal(
      desk.requests[1]!.body,
      JSON.stringify({
        short_description: 'Disk critical on db-1',
        urgency: 1,
        correlation_id: ids['critical'],
      }),
    );

    for (const request of light.requests) {
      const payload = verify(thin.secret, request) as { type: string; data: Record<string, unknown> };
      assert.equal(payload.type, 'case.created');
      assert.deepEqual(Object.keys(payload.data).sort(), [
        'id',
        'severity',
        'source',
        'source_event_id',
        'subject',
        'time',
        'type',
      ]);
    }
  });

  test(`[${engine}] reserved headers and JSONata that does not parse are refused when the endpoint is saved`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const put = (extra: Record<string, unknown>) =>
      h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, {
        url: 'http://127.0.0.1:9/hook',
        types: ['*'],
        ...extra,
      });
    for (const name of ['Webhook-Signature', 'content-type', 'Host', 'User-Agent']) {
      const res = await put({ headers: { [name]: 'x' } });
      assert.equal(res.status, 400, name);
      assert.equal(res.body.errors[0].field, `body.headers.${name}`);
      assert.match(res.body.errors[0].message, /set by Herald/);
    }
    const filter = await put({ filter: 'data.severity = ' });
    assert.equal(filter.status, 400, filter.text);
    assert.equal(filter.body.errors[0].field, 'body.filter');
    assert.match(filter.body.errors[0].message, /^not a valid JSONata expression: .+ \(at character \d+\)$/);
    const transform = await put({ transform: '{"urgency": data.severity = "critical" ? 1 : }' });
    assert.equal(transform.status, 400, transform.text);
    assert.equal(transform.body.errors[0].field, 'body.transform');
    assert.match(transform.body.errors[0].message, /\(at character \d+\)$/);
    const chat = await put({ kind: 'slack', transform: '{"a": 1}' });
    assert.equal(chat.status, 400);
    assert.equal(chat.body.errors[0].field, 'body.transform');
    assert.equal((await h.api('GET', '/v1/endpoints')).body.items.length, 0);
  });

  test(`[${engine}] a rate-limited endpoint starts no more requests than its limit allows while the clock stands still`, async (t) => {
    const s = await setup(t, engine);
    const { h, clock } = s;
    const limited = await startReceiver(t);
    const free = await startReceiver(t);
    const endpoint = await putEndpoint(h, limited.url, { rate_limit: 5 });
    assert.equal(endpoint.rate_limit, 5);
    await putEndpoint(h, free.url);
    for (let n = 1; n <= 4; n++) await publish(s, { data: { n } });
    await routeAll(h);

    const run = send(h);
    await free.waitForRequests(4);
    await limited.waitForRequests(1);
    // The first outcome is written only after the lane tried to start the next: nothing more went out.
    await waitFor(
      async () => (await deliveries(h, `endpoint_id=${endpoint.id}&status=succeeded`)).length === 1,
    );
    assert.equal(limited.requests.length, 1);
    // 5 a second: one more every 200 ms of Herald's clock.
    for (let sent = 2; sent <= 4; sent++) {
      clock.advance(200);
      await limited.waitForRequests(sent);
      await waitFor(
        async () => (await deliveries(h, `endpoint_id=${endpoint.id}&status=succeeded`)).length === sent,
      );
      assert.equal(limited.requests.length, sent);
    }
    assert.equal(await run, 8);
    assert.deepEqual(limited.requests.map(caseOf), [1, 2, 3, 4]);

    // The limit also holds across claims: an event arriving now waits for the next 200 ms slot.
    await publish(s, { data: { n: 5 } });
    await routeAll(h);
    const next = send(h);
    await waitFor(async () => {
      const row = await h.store.db
        .selectFrom('deliveries')
        .select('locked_until')
        .where('endpoint_id', '=', endpoint.id)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      return limited.requests.length > 4 || (row !== undefined && row.locked_until > 0);
    });
    assert.equal(limited.requests.length, 4, 'claimed, waiting for its slot');
    clock.advance(200);
    assert.equal(await next, 2);
    assert.deepEqual(limited.requests.map(caseOf), [1, 2, 3, 4, 5]);
  });
}
