import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSource, createUser, userToken } from './factories.ts';
import { ADMIN_TOKEN, ENGINES, startHerald } from './helpers.ts';

// Bodies that are wrong in every way a client gets wrong: types, shapes, sizes, encodings.
const BAD_BODIES: { payload: string; contentType: string }[] = [
  { payload: '', contentType: 'application/json' },
  { payload: '{', contentType: 'application/json' },
  { payload: 'null', contentType: 'application/json' },
  { payload: '[]', contentType: 'application/json' },
  { payload: '"text"', contentType: 'application/json' },
  { payload: '12', contentType: 'application/json' },
  { payload: '{"__proto__": {"admin": true}}', contentType: 'application/json' },
  {
    payload: JSON.stringify({ id: 5, name: ['x'], url: 7, types: 'a', members: {}, events: 'x' }),
    contentType: 'application/json',
  },
  { payload: JSON.stringify({ name: 'x'.repeat(100_000) }), contentType: 'application/json' },
  {
    payload: JSON.stringify({ a: { b: { c: { d: { e: { f: [[[[[]]]]] } } } } } }),
    contentType: 'application/json',
  },
  { payload: '\u0000\u0001\u0002', contentType: 'application/octet-stream' },
  { payload: '<xml/>', contentType: 'application/xml' },
  { payload: 'a=b', contentType: 'application/x-www-form-urlencoded' },
];

const BAD_IDS = ['%00', '..%2F..%2Fetc', 'x'.repeat(500), '%F0%9F%92%A9', "'; drop table users; --"];

for (const engine of ENGINES) {
  test(`[${engine}] no route answers 5xx to malformed input, with any kind of credential`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const user = await createUser(h);
    const tokens = [ADMIN_TOKEN, source.api_key, await userToken(h, user.id), 'garbage', null];
    const doc = (await h.api('GET', '/openapi.json', undefined, null)).body;
    let requests = 0;
    for (const [path, methods] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      if (path.endsWith('/stream')) continue; // a long-lived response; covered by the stream tests
      for (const method of Object.keys(methods)) {
        for (const id of BAD_IDS) {
          const url = path.replace(/\{[^}]+\}/g, id) + '?limit=-1&cursor=%%%&state=bogus&since=never';
          for (const token of tokens) {
            for (const body of method === 'get' || method === 'delete' ? [undefined] : BAD_BODIES) {
              const response = await h.app.inject({
                method: method.toUpperCase() as 'GET',
                url,
                headers: {
                  ...(token === null ? {} : { authorization: `Bearer ${token}` }),
                  ...(body ? { 'content-type': body.contentType } : {}),
                },
                ...(body ? { payload: body.payload } : {}),
              });
              requests++;
              const where = `${method.toUpperCase()} ${url} (${body?.payload.slice(0, 30)})`;
              assert.ok(
                response.statusCode < 500,
                `${where} answered ${response.statusCode}: ${response.body}`,
              );
              if (response.statusCode >= 400) {
                assert.match(String(response.headers['content-type']), /application\/problem\+json/, where);
                assert.equal(typeof response.json().code, 'string', where);
              }
            }
          }
        }
      }
    }
    assert.ok(requests > 1000);
  });
}

const LEAP = '2016-12-31T23:59:60Z';
const cursorOf = (key: string) => Buffer.from(key, 'utf8').toString('base64url');

for (const engine of ENGINES) {
  test(`[${engine}] a date-time that does not parse is a 400 naming its field on every route that takes one`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createSource(h, { id: 'erp' });
    const cases: [string, string, unknown, string][] = [
      [
        'POST',
        '/v1/announcements',
        { title: 'T', body: 'B', audience: { everyone: true }, expires_at: LEAP },
        'body.expires_at',
      ],
      [
        'POST',
        '/v1/silences',
        { matchers: { types: ['a.*'] }, starts_at: LEAP, ends_at: '2099-01-01T00:00:00Z', comment: 'c' },
        'body.starts_at',
      ],
      ['POST', '/v1/silences', { matchers: { types: ['a.*'] }, ends_at: LEAP, comment: 'c' }, 'body.ends_at'],
      ['POST', '/v1/routing/explain', { source: 'erp', type: 'a.b', time: LEAP }, 'body.time'],
      ['POST', '/v1/deliveries/replay', { since: LEAP }, 'body.since'],
      ['GET', `/v1/deliveries?since=${LEAP}`, undefined, 'query.since'],
      ['GET', `/v1/audit?since=${LEAP}`, undefined, 'query.since'],
      ['GET', `/v1/audit?until=9999-12-31T23:59:59-23:59`, undefined, 'query.until'],
    ];
    for (const [method, url, body, field] of cases) {
      const res = await h.api(method, url, body);
      assert.equal(res.status, 400, `${method} ${url}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed', url);
      assert.equal(res.body.errors[0].field, field, url);
    }
    // Refused before anything was stored.
    assert.deepEqual((await h.api('GET', '/v1/announcements')).body.items, []);
    assert.deepEqual((await h.api('GET', '/v1/silences')).body.items, []);
  });

  test(`[${engine}] JSON bodies nested too deep or holding broken text are a 400 on every route`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const deep = '['.repeat(20_000) + ']'.repeat(20_000);
    const cases: [string, string, string][] = [
      ['/v1/sources', deep, 'body.0'],
      ['/v1/sources', `{"id":"s","name":${'{"a":'.repeat(5_000)}1${'}'.repeat(5_000)}}`, 'body.name'],
      ['/v1/sources', JSON.stringify({ id: 's', name: 'x\ud800' }), 'body.name'],
      ['/v1/routing/explain', `{"source":"erp","type":"a.b","data":${deep}}`, 'body.data'],
    ];
    for (const [url, payload, field] of cases) {
      const res = await h.app.inject({
        method: 'POST',
        url,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
        payload,
      });
      assert.equal(res.statusCode, 400, `${url}: ${res.body.slice(0, 300)}`);
      assert.equal(res.json().code, 'validation_failed', url);
      assert.equal(res.json().errors[0].field, field, url);
    }
  });

  test(`[${engine}] a cursor Herald did not make is a 400 bad_cursor, not a wrong page`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const user = await createUser(h);
    const token = await userToken(h, user.id);
    for (const key of ['{"id":null}', '["evt_1"]', 'a b', '\u0000']) {
      for (const [url, as] of [
        ['/v1/events', ADMIN_TOKEN],
        ['/v1/users', ADMIN_TOKEN],
        ['/v1/audit', ADMIN_TOKEN],
        ['/v1/events', source.api_key],
        ['/v1/me/notifications', token],
      ] as const) {
        const res = await h.api('GET', `${url}?cursor=${cursorOf(key)}`, undefined, as);
        assert.equal(res.status, 400, `${url} ${key}: ${res.text}`);
        assert.equal(res.body.code, 'bad_cursor');
      }
    }
    // Herald's own cursors still page.
    assert.equal((await h.api('GET', `/v1/users?cursor=${cursorOf(user.id)}`)).status, 200);
  });

  test(`[${engine}] a device token with a NUL and an option read-all lacks are refused`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const user = await createUser(h);
    const token = await userToken(h, user.id);
    const device = await h.api('POST', '/v1/me/devices', { kind: 'fcm', token: '\u0000' }, token);
    assert.equal(device.status, 400, device.text);
    assert.equal(device.body.code, 'validation_failed');
    const readAll = await h.api('POST', '/v1/me/notifications/read-all', { before: 'x' }, token);
    assert.equal(readAll.status, 400, readAll.text);
    assert.equal(readAll.body.errors[0].field, 'body.before');
    assert.equal((await h.api('POST', '/v1/me/notifications/read-all', {}, token)).status, 200);
    assert.equal((await h.api('POST', '/v1/me/notifications/read-all', undefined, token)).status, 200);
  });
}
