import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allowList, checkUrl, refusal } from '../src/delivery/ssrf.ts';
import type { HeraldError } from '../src/errors.ts';
import { createSource, uniqueId } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { startReceiver } from './receiver.ts';

/*
 * Outbound requests never reach Herald's own network unless HERALD_OUTBOUND_ALLOW says so: checked when an
 * endpoint is saved and again on every connection. No request here leaves the machine: refused addresses
 * are refused before connecting, and the only real traffic goes to receivers on 127.0.0.1.
 */

const NOTHING_ALLOWED = { HERALD_OUTBOUND_ALLOW: '' };

test('addresses outside the public internet are refused, unless allowed', () => {
  const none = allowList([]);
  const refused = [
    '127.0.0.1',
    '127.8.9.10',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '0.1.2.3',
    '224.0.0.1',
    '240.0.0.1',
    '255.255.255.255',
    '192.0.2.10',
    '198.51.100.7',
    '203.0.113.9',
    '198.18.0.1',
    '::',
    '::1',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '2001:db8::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '::ffff:169.254.169.254',
    '::ffff:10.0.0.1',
    '64:ff9b::a00:1',
    '64:ff9b::127.0.0.1',
  ];
  for (const address of refused) assert.notEqual(refusal(address, none), null, address);
  for (const address of ['8.8.8.8', '1.1.1.1', '93.184.215.14', '2606:4700:4700::1111', '64:ff9b::808:808']) {
    assert.equal(refusal(address, none), null, address);
  }
  assert.equal(refusal('169.254.169.254', none), 'a link-local address');
  const loopback = allowList(['127.0.0.0/8', '::1/128']);
  assert.equal(refusal('127.0.0.1', loopback), null);
  assert.equal(refusal('::1', loopback), null);
  assert.notEqual(refusal('10.0.0.1', loopback), null);
});

test('checkUrl refuses names that resolve inside the network and accepts public literal addresses', async () => {
  const none = allowList([]);
  await assert.rejects(
    checkUrl('http://localhost:8080/x', none),
    (e: HeraldError) => e.code === 'unsafe_url',
  );
  await assert.rejects(
    checkUrl('http://[::ffff:127.0.0.1]/x', none),
    (e: HeraldError) => e.code === 'unsafe_url',
  );
  await assert.rejects(checkUrl('http://2130706433/x', none), (e: HeraldError) => e.code === 'unsafe_url');
  await checkUrl('https://93.184.215.14/hook', none);
  await checkUrl('http://localhost:8080/x', allowList(['127.0.0.0/8', '::1/128']));
});

async function putEndpoint(h: TestHerald, url: string) {
  return h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, { url, types: ['*'] });
}

for (const engine of ENGINES) {
  test(`[${engine}] endpoint URLs that point inside the network are refused when saved`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, env: NOTHING_ALLOWED });
    for (const url of [
      'http://127.0.0.1:8080/hook',
      'http://localhost:8080/hook',
      'http://[::1]/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/hook',
      'http://100.64.0.1/hook',
      'http://0.0.0.0/hook',
      'http://[fd00::1]/hook',
    ]) {
      const res = await putEndpoint(h, url);
      assert.equal(res.status, 400, url);
      assert.equal(res.body.code, 'unsafe_url', url);
      assert.match(res.body.detail, /address/, url);
    }
    assert.equal((await putEndpoint(h, 'https://93.184.215.14/hook')).status, 201);
  });

  test(`[${engine}] the allow list opens loopback but not the metadata service or private ranges`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    assert.equal((await putEndpoint(h, 'http://127.0.0.1:8080/hook')).status, 201);
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/hook']) {
      const res = await putEndpoint(h, url);
      assert.equal(res.status, 400, url);
      assert.equal(res.body.code, 'unsafe_url');
    }
  });

  test(`[${engine}] a send to a refused address is recorded as a failed attempt and never reaches it`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, env: NOTHING_ALLOWED });
    const receiver = await startReceiver(t);
    // Saved behind the API's back (as if the allow list had changed since): the connection is refused anyway.
    const now = Date.now();
    for (const [id, url] of [
      ['by-address', receiver.url],
      ['by-name', `http://localhost:${receiver.port}/hook`],
    ]) {
      await h.store.db
        .insertInto('endpoints')
        .values({
          id: id!,
          url: url!,
          description: null,
          types: '["*"]',
          secret: `whsec_${Buffer.alloc(32, 1).toString('base64')}`,
          status: 'enabled',
          disabled_reason: null,
          kind: 'webhook',
          filter: null,
          transform: null,
          headers: null,
          payload: 'full',
          rate_limit: null,
          ordered: 0,
          failures: 0,
          failing_since: null,
          paused_until: null,
          created_at: now,
          updated_at: now,
        })
        .execute();
    }
    const source = await createSource(h);
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { authorization: `Bearer ${source.api_key}` },
      payload: { type: 'case.created' },
    });
    assert.equal(res.statusCode, 202, res.body);
    while ((await h.workers.router.runOnce()) > 0);
    assert.equal(await h.workers.dispatcher.runOnce(), 2);

    for (const id of ['by-address', 'by-name']) {
      const [delivery] = (await h.api('GET', `/v1/endpoints/${id}/deliveries`)).body.items;
      assert.equal(delivery.status, 'pending', id);
      assert.equal(delivery.attempts[0].outcome, 'retry', id);
      assert.equal(delivery.attempts[0].status_code, null, id);
      assert.match(delivery.attempts[0].error, /refused: .*loopback/, id);
    }
    assert.equal(receiver.requests.length, 0);
  });
}
