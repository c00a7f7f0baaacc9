import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hashToken } from '../src/ids.ts';
import { createSource, uniqueId } from './factories.ts';
import { ENGINES, startHerald, walk } from './helpers.ts';

for (const engine of ENGINES) {
  test(`[${engine}] creates a source and shows its API key only in the create response`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const created = await h.api('POST', '/v1/sources', {
      id: 'erp',
      name: 'ERP',
      callback_url: 'https://erp.example.com/herald',
    });
    assert.equal(created.status, 201);
    assert.equal(created.body.id, 'erp');
    assert.equal(created.body.name, 'ERP');
    assert.equal(created.body.callback_url, 'https://erp.example.com/herald');
    assert.match(created.body.api_key, /^hrd_src_/);
    assert.match(created.body.created_at, /^\d{4}-\d\d-\d\dT/);

    const fetched = await h.api('GET', '/v1/sources/erp');
    assert.equal(fetched.status, 200);
    assert.deepEqual(Object.keys(fetched.body).sort(), [
      'callback_secret',
      'callback_url',
      'created_at',
      'id',
      'name',
      'updated_at',
    ]);
    assert.match(created.body.callback_secret, /^whsec_/);
    assert.equal(fetched.body.callback_secret, '********', 'shown on purpose only');

    const keys = await h.api('GET', '/v1/sources/erp/keys');
    assert.equal(keys.status, 200);
    assert.equal(keys.body.items.length, 1);
    assert.deepEqual(Object.keys(keys.body.items[0]).sort(), [
      'created_at',
      'id',
      'name',
      'prefix',
      'revoked_at',
    ]);
    assert.ok(created.body.api_key.startsWith(keys.body.items[0].prefix));
  });

  test(`[${engine}] stores only a hash of a source's API key`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const rows = await h.store.db
      .selectFrom('credentials')
      .selectAll()
      .where('owner_id', '=', source.id)
      .execute();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.kind, 'source');
    assert.equal(rows[0]!.hash, hashToken(source.api_key));
    for (const value of Object.values(rows[0]!)) assert.notEqual(value, source.api_key);
    const audit = await h.store.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', '=', 'source.created')
      .execute();
    assert.equal(audit.length, 1);
    assert.ok(!JSON.stringify(audit).includes(source.api_key));
  });

  test(`[${engine}] a source key is refused on admin routes with 403`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const res = await h.api('GET', `/v1/sources/${source.id}`, undefined, source.api_key);
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'forbidden');
    assert.deepEqual(await h.deps.auth.identify(`Bearer ${source.api_key}`), {
      kind: 'source',
      sourceId: source.id,
    });
  });

  test(`[${engine}] returns 409 when the source id is already taken`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createSource(h, { id: 'crm' });
    const again = await h.api('POST', '/v1/sources', { id: 'crm', name: 'Another CRM' });
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'conflict');
    assert.match(again.headers['content-type'] as string, /application\/problem\+json/);
    const keys = await h.api('GET', '/v1/sources/crm/keys');
    assert.equal(keys.body.items.length, 1);
  });

  test(`[${engine}] rejects bad source ids, names and callback URLs, naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const cases: [unknown, string][] = [
      [{ id: '-starts-with-dash', name: 'x' }, 'body.id'],
      [{ id: 'has space', name: 'x' }, 'body.id'],
      [{ id: 'a'.repeat(65), name: 'x' }, 'body.id'],
      [{ id: 'ok' }, 'body.name'],
      [{ id: 'ok', name: 'x', callback_url: 'ftp://example.com/x' }, 'body.callback_url'],
      [{ id: 'ok', name: 'x', callback_url: 'not a url' }, 'body.callback_url'],
      [{ id: 'ok', name: 'x', callback_url: 'https://user:pw@example.com/' }, 'body.callback_url'],
      [{ id: 'ok', name: 'x', extra: 1 }, 'body.extra'],
      [{ id: 'herald', name: 'Not Herald' }, 'body.id'],
    ];
    for (const [body, field] of cases) {
      const res = await h.api('POST', '/v1/sources', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(
        res.body.errors.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(body)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
    assert.equal((await h.api('GET', '/v1/sources')).body.items.length, 0);
  });

  test(`[${engine}] changes a source's name and callback, and null removes the callback`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const renamed = await h.api('PATCH', `/v1/sources/${source.id}`, {
      name: 'Renamed',
      callback_url: 'http://127.0.0.1:9/cb',
    });
    assert.equal(renamed.status, 200);
    assert.equal(renamed.body.name, 'Renamed');
    assert.equal(renamed.body.callback_url, 'http://127.0.0.1:9/cb');
    const cleared = await h.api('PATCH', `/v1/sources/${source.id}`, { callback_url: null });
    assert.equal(cleared.status, 200);
    assert.equal(cleared.body.name, 'Renamed');
    assert.equal(cleared.body.callback_url, null);
    const bad = await h.api('PATCH', `/v1/sources/${source.id}`, { callback_url: 'mailto:x@example.com' });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errors[0].field, 'body.callback_url');
    for (const url of ['http://169.254.169.254/latest', 'http://10.1.2.3/cb']) {
      const unsafe = await h.api('PATCH', `/v1/sources/${source.id}`, { callback_url: url });
      assert.equal(unsafe.status, 400, url);
      assert.equal(unsafe.body.code, 'unsafe_url');
      const created = await h.api('POST', '/v1/sources', { id: 'elsewhere', name: 'x', callback_url: url });
      assert.equal(created.body.code, 'unsafe_url');
    }
  });

  test(`[${engine}] answers 404 for a source that does not exist`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    for (const [method, url, body] of [
      ['GET', '/v1/sources/nope', undefined],
      ['PATCH', '/v1/sources/nope', { name: 'x' }],
      ['DELETE', '/v1/sources/nope', undefined],
      ['GET', '/v1/sources/nope/keys', undefined],
      ['POST', '/v1/sources/nope/keys', {}],
      ['DELETE', '/v1/sources/nope/keys/key_x', undefined],
    ] as const) {
      const res = await h.api(method, url, body);
      assert.equal(res.status, 404, `${method} ${url}`);
      assert.equal(res.body.code, 'not_found');
    }
  });

  test(`[${engine}] deleting a source revokes its keys at once`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    // Warm the authenticator's cache: deleting must not leave the key usable until the cache expires.
    assert.equal((await h.api('GET', `/v1/sources/${source.id}`, undefined, source.api_key)).status, 403);
    assert.equal((await h.api('DELETE', `/v1/sources/${source.id}`)).status, 204);
    assert.equal((await h.api('GET', `/v1/sources/${source.id}`)).status, 404);
    const res = await h.api('GET', `/v1/sources/${source.id}`, undefined, source.api_key);
    assert.equal(res.status, 401);
    assert.equal(await h.deps.auth.identify(`Bearer ${source.api_key}`), null);
    const audit = await h.store.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject_id', '=', source.id)
      .execute();
    assert.deepEqual(
      audit.map((a) => a.action),
      ['source.created', 'source.deleted'],
    );
  });

  test(`[${engine}] adds a second key; both work until one is revoked`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const second = await h.api('POST', `/v1/sources/${source.id}/keys`, { name: 'deploy' });
    assert.equal(second.status, 201);
    assert.match(second.body.api_key, /^hrd_src_/);
    assert.equal(second.body.name, 'deploy');
    assert.equal(second.body.revoked_at, null);
    assert.notEqual(second.body.api_key, source.api_key);
    for (const key of [source.api_key, second.body.api_key]) {
      assert.equal((await h.api('GET', `/v1/sources/${source.id}`, undefined, key)).status, 403);
    }

    const revoke = await h.api('DELETE', `/v1/sources/${source.id}/keys/${second.body.id}`);
    assert.equal(revoke.status, 204);
    assert.equal(
      (await h.api('GET', `/v1/sources/${source.id}`, undefined, second.body.api_key)).status,
      401,
    );
    assert.equal((await h.api('GET', `/v1/sources/${source.id}`, undefined, source.api_key)).status, 403);

    const keys = await h.api('GET', `/v1/sources/${source.id}/keys`);
    const revoked = keys.body.items.find((k: { id: string }) => k.id === second.body.id);
    assert.match(revoked.revoked_at, /^\d{4}-/);
    assert.ok(!JSON.stringify(keys.body).includes('hash'));
  });

  test(`[${engine}] rotates keys in one call with revoke_others`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const extra = await h.api('POST', `/v1/sources/${source.id}/keys`, {});
    assert.equal((await h.api('GET', '/v1/sources', undefined, source.api_key)).status, 403);
    const rotated = await h.api('POST', `/v1/sources/${source.id}/keys`, { revoke_others: true });
    assert.equal(rotated.status, 201);
    assert.equal((await h.api('GET', '/v1/sources', undefined, source.api_key)).status, 401);
    assert.equal((await h.api('GET', '/v1/sources', undefined, extra.body.api_key)).status, 401);
    assert.deepEqual(await h.deps.auth.identify(`Bearer ${rotated.body.api_key}`), {
      kind: 'source',
      sourceId: source.id,
    });
    const keys = await h.api('GET', `/v1/sources/${source.id}/keys`);
    const live = keys.body.items.filter((k: { revoked_at: string | null }) => k.revoked_at === null);
    assert.deepEqual(
      live.map((k: { id: string }) => k.id),
      [rotated.body.id],
    );
  });

  test(`[${engine}] adds a key when POST .../keys has no body`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const res = await h.api('POST', `/v1/sources/${source.id}/keys`);
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.name, null);
    assert.equal((await h.api('GET', `/v1/sources/${source.id}/keys`)).body.items.length, 2);
  });

  test(`[${engine}] answers 404 when revoking a key of another source`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const a = await createSource(h);
    const b = await createSource(h);
    const bKeys = await h.api('GET', `/v1/sources/${b.id}/keys`);
    const res = await h.api('DELETE', `/v1/sources/${a.id}/keys/${bKeys.body.items[0].id}`);
    assert.equal(res.status, 404);
    assert.equal((await h.api('GET', `/v1/sources/${b.id}`, undefined, b.api_key)).status, 403);
  });

  test(`[${engine}] refuses requests without a valid admin token`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    assert.equal((await h.api('GET', '/v1/sources', undefined, null)).status, 401);
    assert.equal((await h.api('GET', '/v1/sources', undefined, 'hrd_src_wrong')).status, 401);
    const res = await h.api('POST', '/v1/sources', { id: 'x', name: 'x' }, null);
    assert.equal(res.status, 401);
    assert.equal(res.body.code, 'unauthorized');
  });

  test(`[${engine}] lists sources page by page until every one was seen once`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) ids.add((await createSource(h, { id: uniqueId('page') })).id);
    const { items, pages } = await walk(h, '/v1/sources', 3);
    assert.equal(pages, 3);
    assert.equal(items.length, 7);
    assert.deepEqual(new Set(items.map((s) => s.id)), ids);
    assert.equal((await h.api('GET', '/v1/sources?cursor=!!!')).body?.code, 'bad_cursor');
  });
}
