import assert from 'node:assert/strict';
import { test } from 'node:test';
import { listDeliveriesForEvent } from '../src/delivery/deliveries.repo.ts';
import { createSource, uniqueId } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';

/*
 * The admin API for webhook endpoints. The URLs point at a closed port on loopback (allowed in tests):
 * nothing here is ever sent, the workers do not run.
 */

const URL_A = 'http://127.0.0.1:9/a';
const URL_B = 'http://127.0.0.1:9/b';

async function publishAndRoute(h: TestHerald, count = 1): Promise<string[]> {
  const source = await createSource(h);
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { authorization: `Bearer ${source.api_key}` },
      payload: { type: 'order.shipped', data: { n: i } },
    });
    assert.equal(res.statusCode, 202, res.body);
    ids.push(res.json().id);
  }
  while ((await h.workers.router.runOnce()) > 0);
  return ids;
}

for (const engine of ENGINES) {
  test(`[${engine}] PUT creates an endpoint with a generated secret, and PUT again replaces it keeping the secret`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    const created = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: URL_A,
      types: ['order.*'],
      description: 'ERP',
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.id, id);
    assert.equal(created.body.url, URL_A);
    assert.deepEqual(created.body.types, ['order.*']);
    assert.equal(created.body.description, 'ERP');
    assert.equal(created.body.status, 'enabled');
    assert.equal(created.body.disabled_reason, null);
    assert.match(created.body.secret, /^whsec_[A-Za-z0-9+/]+=*$/);
    assert.equal(Buffer.from(created.body.secret.slice(6), 'base64').length, 32);

    const replaced = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: URL_B,
      types: ['order.shipped', 'case.*'],
    });
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.body.url, URL_B);
    assert.deepEqual(replaced.body.types, ['order.shipped', 'case.*']);
    assert.equal(replaced.body.secret, '********', 'an answer that did not set the secret does not show it');
    const revealed = await h.api('GET', `/v1/endpoints/${id}/secret`);
    assert.deepEqual(revealed.body, { secret: created.body.secret }, 'left out means kept');
    assert.equal(replaced.body.description, 'ERP', 'left out means unchanged');
    assert.equal(replaced.body.created_at, created.body.created_at);

    const got = await h.api('GET', `/v1/endpoints/${id}`);
    assert.deepEqual(got.body, replaced.body);
    const audit = await h.api('GET', `/v1/audit?subject_id=${id}`);
    assert.deepEqual(audit.body.items.map((e: { action: string }) => e.action).sort(), [
      'endpoint.created',
      'endpoint.secret_revealed',
      'endpoint.updated',
    ]);
    assert.ok(!audit.text.includes(created.body.secret), 'secrets stay out of the audit log');
  });

  test(`[${engine}] a given secret is kept, and a malformed one is refused`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const secret = `whsec_${Buffer.alloc(24, 1).toString('base64')}`;
    const ok = await h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, { url: URL_A, types: ['*'], secret });
    assert.equal(ok.status, 201, ok.text);
    assert.equal(ok.body.secret, secret);
    for (const bad of [
      'whsec_short',
      Buffer.alloc(32, 1).toString('base64'),
      `whsec_${Buffer.alloc(80).toString('base64')}`,
    ]) {
      const res = await h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, {
        url: URL_A,
        types: ['*'],
        secret: bad,
      });
      assert.equal(res.status, 400, bad);
      assert.equal(res.body.code, 'validation_failed');
      assert.equal(res.body.errors[0].field, 'body.secret');
    }
  });

  test(`[${engine}] bad endpoint definitions get a 400 naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const cases: [unknown, string][] = [
      [{ url: 'ftp://127.0.0.1/x', types: ['*'] }, 'body.url'],
      [{ url: 'not a url', types: ['*'] }, 'body.url'],
      [{ url: 'http://user:pw@127.0.0.1/x', types: ['*'] }, 'body.url'],
      [{ url: URL_A, types: [] }, 'body.types'],
      [{ url: URL_A, types: ['bad type!'] }, 'body.types.0'],
      [{ url: URL_A }, 'body.types'],
      [{ url: URL_A, types: ['*'], colour: 'red' }, 'body.colour'],
    ];
    for (const [body, field] of cases) {
      const res = await h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.code, 'validation_failed');
      assert.equal(res.body.errors?.[0]?.field, field, JSON.stringify(res.body));
    }
    const badId = await h.api('PUT', '/v1/endpoints/-nope', { url: URL_A, types: ['*'] });
    assert.equal(badId.status, 400);
  });

  test(`[${engine}] only admins manage endpoints`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    assert.equal((await h.api('GET', '/v1/endpoints', undefined, null)).status, 401);
    const res = await h.api('PUT', '/v1/endpoints/x', { url: URL_A, types: ['*'] }, source.api_key);
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'forbidden');
  });

  test(`[${engine}] endpoints are listed in pages`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    for (const id of ['ep-a', 'ep-b', 'ep-c']) {
      assert.equal((await h.api('PUT', `/v1/endpoints/${id}`, { url: URL_A, types: ['*'] })).status, 201);
    }
    const first = await h.api('GET', '/v1/endpoints?limit=2');
    assert.deepEqual(
      first.body.items.map((e: { id: string }) => e.id),
      ['ep-a', 'ep-b'],
    );
    const second = await h.api('GET', `/v1/endpoints?limit=2&cursor=${first.body.next_cursor}`);
    assert.deepEqual(
      second.body.items.map((e: { id: string }) => e.id),
      ['ep-c'],
    );
    assert.equal(second.body.next_cursor, null);
    assert.equal((await h.api('GET', '/v1/endpoints/ep-z')).status, 404);
  });

  test(`[${engine}] disabling an endpoint cancels its pending deliveries, and enabling clears the reason`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    await h.api('PUT', `/v1/endpoints/${id}`, { url: URL_A, types: ['order.*'] });
    const [eventId] = await publishAndRoute(h);
    const [pending] = await listDeliveriesForEvent(h.store.db, eventId!);
    assert.equal(pending!.status, 'pending');
    assert.equal(pending!.endpoint_id, id);
    assert.equal(pending!.channel, 'webhook');

    const disabled = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: URL_A,
      types: ['order.*'],
      enabled: false,
    });
    assert.equal(disabled.body.status, 'disabled');
    assert.equal(disabled.body.disabled_reason, 'manual');
    const [cancelled] = await listDeliveriesForEvent(h.store.db, eventId!);
    assert.equal(cancelled!.status, 'cancelled');
    assert.equal(cancelled!.last_error, 'endpoint disabled');

    const enabled = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: URL_A,
      types: ['order.*'],
      enabled: true,
    });
    assert.equal(enabled.body.status, 'enabled');
    assert.equal(enabled.body.disabled_reason, null);
  });

  test(`[${engine}] deleting an endpoint cancels its pending deliveries`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    await h.api('PUT', `/v1/endpoints/${id}`, { url: URL_A, types: ['*'] });
    const [eventId] = await publishAndRoute(h);
    const del = await h.api('DELETE', `/v1/endpoints/${id}`);
    assert.equal(del.status, 204);
    assert.equal((await h.api('GET', `/v1/endpoints/${id}`)).status, 404);
    assert.equal((await h.api('DELETE', `/v1/endpoints/${id}`)).status, 404);
    const [delivery] = await listDeliveriesForEvent(h.store.db, eventId!);
    assert.equal(delivery!.status, 'cancelled');
    assert.equal(delivery!.last_error, 'endpoint deleted');
    assert.equal(await h.workers.dispatcher.runOnce(), 0);
  });

  test(`[${engine}] an endpoint's deliveries are listed newest first, by status, in pages`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    await h.api('PUT', `/v1/endpoints/${id}`, { url: URL_A, types: ['*'] });
    const eventIds = await publishAndRoute(h, 3);
    const all = await h.api('GET', `/v1/endpoints/${id}/deliveries`);
    assert.equal(all.status, 200, all.text);
    assert.deepEqual(
      all.body.items.map((d: { event_id: string }) => d.event_id),
      [...eventIds].reverse(),
    );
    const first = all.body.items[0];
    assert.equal(first.status, 'pending');
    assert.equal(first.attempt_count, 0);
    assert.match(first.msg_id, /^msg_/);
    assert.deepEqual(first.attempts, []);

    const page = await h.api('GET', `/v1/endpoints/${id}/deliveries?limit=2`);
    assert.equal(page.body.items.length, 2);
    const rest = await h.api('GET', `/v1/endpoints/${id}/deliveries?limit=2&cursor=${page.body.next_cursor}`);
    assert.deepEqual(
      rest.body.items.map((d: { event_id: string }) => d.event_id),
      [eventIds[0]],
    );
    assert.equal(
      (await h.api('GET', `/v1/endpoints/${id}/deliveries?status=succeeded`)).body.items.length,
      0,
    );
    assert.equal((await h.api('GET', `/v1/endpoints/${id}/deliveries?status=bogus`)).status, 400);
    assert.equal((await h.api('GET', `/v1/endpoints/nope/deliveries`)).status, 404);

    const one = await h.api('GET', `/v1/endpoints/${id}/deliveries/${first.id}`);
    assert.deepEqual(one.body, first);
    assert.equal((await h.api('GET', `/v1/endpoints/${id}/deliveries/dlv_nope`)).status, 404);
  });
}
