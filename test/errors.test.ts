import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERRORS } from '../src/errors.ts';
import { startHerald } from './helpers.ts';

test('every error code in the registry is listed in the served OpenAPI document, and nothing else', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const res = await h.api('GET', '/openapi.json', undefined, null);
  assert.equal(res.status, 200);
  assert.equal(res.body.openapi, '3.1.0');
  assert.deepEqual(Object.keys(res.body['x-error-codes']).sort(), Object.keys(ERRORS).sort());
  assert.deepEqual(
    res.body.components.schemas.Problem.properties.code.enum.sort(),
    Object.keys(ERRORS).sort(),
  );
  for (const [code, entry] of Object.entries(ERRORS)) {
    assert.ok(entry.status >= 400 && entry.status < 600, code);
  }
});

test('the OpenAPI document describes the main routes and the docs page is served', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const doc = (await h.api('GET', '/openapi.json', undefined, null)).body;
  for (const path of [
    '/v1/events',
    '/v1/events/batch',
    '/v1/sources',
    '/v1/users/{id}',
    '/v1/me/notifications',
    '/v1/me/stream',
    '/v1/endpoints/{id}',
    '/v1/audit',
  ]) {
    assert.ok(doc.paths[path], `missing ${path}`);
  }
  const publish = doc.paths['/v1/events'].post;
  assert.equal(
    publish.responses['4XX'].content['application/problem+json'].schema.$ref,
    '#/components/schemas/Problem',
  );
  const docs = await h.app.inject({ method: 'GET', url: '/docs/' });
  assert.equal(docs.statusCode, 200);
  assert.match(docs.body, /swagger/i);
});

test('unknown routes and methods answer problem+json', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const res = await h.api('GET', '/v1/nothing-here');
  assert.equal(res.status, 404);
  assert.equal(res.body.code, 'route_not_found');
  assert.match(String(res.headers['content-type']), /application\/problem\+json/);

  // A path Herald serves, with a method it does not take there: 405 and the methods it does take.
  const wrong = await h.api('PATCH', '/v1/users/someone');
  assert.equal(wrong.status, 405);
  assert.equal(wrong.body.code, 'method_not_allowed');
  assert.equal(wrong.headers['allow'], 'DELETE, GET, HEAD, PUT');
  assert.match(String(wrong.headers['content-type']), /application\/problem\+json/);
  const token = await h.api('POST', '/v1/users/someone/tokens/key_1');
  assert.equal(token.status, 405);
  assert.equal(token.headers['allow'], 'DELETE');
  // Each `:param` stands for one segment only.
  assert.equal((await h.api('DELETE', '/v1/users/someone/extra/segments')).status, 404);
});

test('health, readiness and metrics answer without credentials', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  assert.equal((await h.api('GET', '/healthz', undefined, null)).body.status, 'ok');
  assert.equal((await h.api('GET', '/readyz', undefined, null)).body.status, 'ready');
  const metrics = await h.api('GET', '/metrics', undefined, null);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /herald_events_ingested_total/);
});

test('with HERALD_METRICS_TOKEN set, metrics ask for it; health and readiness stay open', async (t) => {
  const token = 'metrics-scraper-token-0123456789';
  const h = await startHerald(t, 'sqlite', { workers: false, env: { HERALD_METRICS_TOKEN: token } });
  for (const sent of [null, 'not-the-metrics-token-0123456789', undefined]) {
    // null: no token; a wrong one; undefined: the admin token, which is not the metrics token either.
    const refused = await h.api('GET', '/metrics', undefined, sent);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.code, 'unauthorized');
  }
  const metrics = await h.api('GET', '/metrics', undefined, token);
  assert.equal(metrics.status, 200);
  assert.match(metrics.text, /herald_events_ingested_total/);
  assert.equal((await h.api('GET', '/healthz', undefined, null)).status, 200);
  assert.equal((await h.api('GET', '/readyz', undefined, null)).status, 200);
});
