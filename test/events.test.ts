import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSource, createUser, uniqueId } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, waitFor } from './helpers.ts';

async function publish(h: TestHerald, key: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await h.app.inject({
    method: 'POST',
    url: '/v1/events',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.statusCode, body: response.json(), headers: response.headers };
}

async function routed(h: TestHerald, id: string) {
  return waitFor(async () => {
    const res = await h.api('GET', `/v1/events/${id}`);
    return res.body?.status === 'routed' ? res.body : undefined;
  });
}

for (const engine of ENGINES) {
  test(`[${engine}] a native event with explicit recipients reaches them in-app with no rule configured`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await createUser(h);
    const bob = await createUser(h);
    const res = await publish(h, source.api_key, {
      id: 'po-4711',
      type: 'purchase_order.approval_requested',
      title: 'PO 4711 needs approval',
      severity: 'warning',
      recipients: { users: [alice.id, bob.id, 'nobody-here'] },
      data: { amount: 12500 },
    });
    assert.equal(res.status, 202);
    assert.match(res.body.id, /^evt_/);
    assert.equal(res.body.source_event_id, 'po-4711');
    assert.equal(res.body.duplicate, false);

    const event = await routed(h, res.body.id);
    assert.equal(event.source, source.id);
    assert.deepEqual(
      event.notifications.map((n: { user_id: string }) => n.user_id).sort(),
      [alice.id, bob.id].sort(),
    );
    assert.equal(event.routing.recipient_count, 2);
    assert.deepEqual(event.routing.unresolved, [
      { kind: 'user', ref: 'nobody-here', via: 'recipients', reason: 'no such user in the directory' },
    ]);
    const audit = await h.api('GET', `/v1/audit?subject_id=${res.body.id}`);
    assert.deepEqual(audit.body.items.map((e: { action: string }) => e.action).sort(), [
      'event.ingested',
      'event.routed',
    ]);
  });

  test(`[${engine}] publishing the same id again returns the same event and creates nothing new`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const user = await createUser(h);
    const event = {
      id: 'case-1',
      type: 'case.escalated',
      recipients: { users: [user.id] },
      data: { b: 1, a: 2 },
    };
    const first = await publish(h, source.api_key, event);
    // Same content with keys in another order is the same event.
    const again = await publish(h, source.api_key, {
      data: { a: 2, b: 1 },
      recipients: { users: [user.id] },
      type: 'case.escalated',
      id: 'case-1',
    });
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    assert.equal(again.body.duplicate, true);
    await routed(h, first.body.id);
    const count = await h.store.db
      .selectFrom('notifications')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst();
    assert.equal(Number(count!.n), 1);

    const conflict = await publish(h, source.api_key, { ...event, title: 'something else' });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.code, 'idempotency_conflict');
    assert.equal(conflict.body.id, first.body.id);
  });

  test(`[${engine}] the Idempotency-Key header makes a retry without an id return the same event`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const body = { type: 'batch.completed', data: { batch: 'B-7', volume: 120000 } };
    const first = await publish(h, source.api_key, body, { 'idempotency-key': 'run-7' });
    const second = await publish(h, source.api_key, body, { 'idempotency-key': 'run-7' });
    assert.equal(first.status, 202);
    assert.equal(second.body.id, first.body.id);
    assert.equal(second.body.duplicate, true);
    const other = await publish(
      h,
      source.api_key,
      { ...body, data: { batch: 'B-8' } },
      { 'idempotency-key': 'run-7' },
    );
    assert.equal(other.status, 409);
  });

  test(`[${engine}] two sources may use the same event id independently`, async (t) => {
    const h = await startHerald(t, engine);
    const erp = await createSource(h);
    const crm = await createSource(h);
    const a = await publish(h, erp.api_key, { id: 'x-1', type: 'order.shipped' });
    const b = await publish(h, crm.api_key, { id: 'x-1', type: 'order.shipped' });
    assert.equal(a.status, 202);
    assert.equal(b.status, 202);
    assert.notEqual(a.body.id, b.body.id);
  });

  test(`[${engine}] CloudEvents in structured and binary mode are accepted`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const user = await createUser(h);
    const structured = await publish(
      h,
      source.api_key,
      {
        specversion: '1.0',
        id: 'ce-1',
        source: '/erp/purchasing',
        type: 'com.example.po.created',
        time: '2026-11-23T10:00:00Z',
        subject: 'PO-1',
        title: 'PO created',
        recipients: { users: [user.id] },
        tenant: 'emea',
        data: { amount: 5 },
      },
      { 'content-type': 'application/cloudevents+json; charset=utf-8' },
    );
    assert.equal(structured.status, 202, JSON.stringify(structured.body));
    const stored = await routed(h, structured.body.id);
    assert.equal(stored.type, 'com.example.po.created');
    assert.equal(stored.subject, 'PO-1');
    assert.equal(stored.time, '2026-11-23T10:00:00.000Z');
    assert.deepEqual(stored.extensions, { source: '/erp/purchasing', tenant: 'emea' });
    assert.equal(stored.notifications.length, 1);

    const binary = await publish(h, source.api_key, JSON.stringify({ job: 'sync-42', error: 'E1001' }), {
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-id': 'ce-2',
      'ce-source': '/integration/jobs',
      'ce-type': 'integration.job.failed',
      'ce-severity': 'error',
      'ce-title': 'Job sync-42 failed: %E2%9C%97',
      'ce-recipients': user.id,
    });
    assert.equal(binary.status, 202, JSON.stringify(binary.body));
    const job = await routed(h, binary.body.id);
    assert.equal(job.severity, 'error');
    assert.equal(job.title, 'Job sync-42 failed: ✗');
    assert.deepEqual(job.data, { job: 'sync-42', error: 'E1001' });
    assert.equal(job.notifications[0].user_id, user.id);

    const xml = await publish(h, source.api_key, '<letter id="9"/>', {
      'content-type': 'application/xml',
      'ce-specversion': '1.0',
      'ce-id': 'ce-3',
      'ce-source': '/docs',
      'ce-type': 'letter.bounced',
    });
    assert.equal(xml.status, 202);
    assert.equal((await routed(h, xml.body.id)).data, '<letter id="9"/>');
  });

  test(`[${engine}] a batch is answered item by item`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const res = await h.api(
      'POST',
      '/v1/events/batch',
      {
        events: [
          { type: 'a.b', id: '1' },
          { type: 'bad type!' },
          { type: 'a.c', id: '1', title: 'reuse' },
          { type: 'a.d' },
        ],
      },
      source.api_key,
    );
    assert.equal(res.status, 200);
    assert.equal(res.body.accepted, 2);
    assert.equal(res.body.rejected, 2);
    assert.deepEqual(
      res.body.items.map((i: { status: number }) => i.status),
      [202, 400, 409, 202],
    );
    assert.equal(res.body.items[1].error.code, 'validation_failed');
    assert.equal(res.body.items[1].error.errors[0].field, 'events.1.type');
  });

  test(`[${engine}] bad input gets a coded problem, never a 500`, async (t) => {
    const h = await startHerald(t, engine, { env: { HERALD_BODY_LIMIT: '2048' } });
    const source = await createSource(h);
    const cases: [string, Awaited<ReturnType<typeof publish>>, number, string][] = [
      ['malformed JSON', await publish(h, source.api_key, '{"type": '), 400, 'malformed_json'],
      ['missing type', await publish(h, source.api_key, { title: 'x' }), 400, 'validation_failed'],
      [
        'unknown field',
        await publish(h, source.api_key, { type: 'a.b', colour: 'red' }),
        400,
        'validation_failed',
      ],
      [
        'bad severity',
        await publish(h, source.api_key, { type: 'a.b', severity: 'loud' }),
        400,
        'validation_failed',
      ],
      [
        'bad time',
        await publish(h, source.api_key, { type: 'a.b', time: 'yesterday' }),
        400,
        'validation_failed',
      ],
      ['array body', await publish(h, source.api_key, [1, 2]), 400, 'validation_failed'],
      [
        'too large',
        await publish(h, source.api_key, { type: 'a.b', data: 'x'.repeat(5000) }),
        413,
        'payload_too_large',
      ],
      [
        'text body',
        await publish(h, source.api_key, 'hello', { 'content-type': 'text/plain' }),
        415,
        'unsupported_media_type',
      ],
      ['no key', await publish(h, 'nope', { type: 'a.b' }), 401, 'unauthorized'],
      ['admin key', await publish(h, 'test-admin-token-0123456789', { type: 'a.b' }), 403, 'forbidden'],
      [
        'other source',
        await publish(h, source.api_key, { type: 'a.b', source: 'someone-else' }),
        403,
        'forbidden',
      ],
    ];
    for (const [name, res, status, code] of cases) {
      assert.equal(res.status, status, `${name}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.code, code, name);
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/, name);
    }
    const missing = await publish(h, source.api_key, { type: 'a.b', title: 5 });
    assert.deepEqual(missing.body.errors, [{ field: 'title', message: 'must be string' }]);
    const unknown = await h.api('GET', `/v1/events/${uniqueId('evt')}`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.code, 'not_found');
  });

  test(`[${engine}] a source reads only its own events`, async (t) => {
    const h = await startHerald(t, engine);
    const erp = await createSource(h);
    const crm = await createSource(h);
    const res = await publish(h, erp.api_key, { type: 'order.shipped' });
    assert.equal((await h.api('GET', `/v1/events/${res.body.id}`, undefined, erp.api_key)).status, 200);
    assert.equal((await h.api('GET', `/v1/events/${res.body.id}`, undefined, crm.api_key)).status, 404);
    const list = await h.api('GET', '/v1/events', undefined, crm.api_key);
    assert.deepEqual(list.body.items, []);
  });
}
