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
