import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadKeys, signToken } from '../src/settings/keys.ts';
import { createSource, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';

/** A user with an inbox token. */
async function member(h: TestHerald) {
  const user = await createUser(h, { email: `${Math.random().toString(36).slice(2)}@example.com` });
  return { id: user.id, token: await userToken(h, user.id) };
}

/** The audit entries of `action` about a user, oldest first. */
async function audited(h: TestHerald, action: string, userId: string) {
  const res = await h.api('GET', `/v1/audit?action=${action}&subject_id=${encodeURIComponent(userId)}`);
  assert.equal(res.status, 200, res.text);
  return (res.body.items as { actor: string; data: unknown }[]).reverse();
}

/** The one-click unsubscribe link Herald puts in an email to `userId` about `type`. */
async function unsubscribeLink(h: TestHerald, userId: string, type: string, channel = 'email') {
  const keys = await loadKeys(h.store.db);
  return `/v1/unsubscribe/${signToken(keys.linkSecret, { u: userId, c: type, ch: channel })}`;
}

function post(h: TestHerald, url: string, payload?: string, headers: Record<string, string> = {}) {
  return h.app.inject({
    method: 'POST',
    url,
    headers: {
      ...(payload === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded' }),
      ...headers,
    },
    ...(payload === undefined ? {} : { payload }),
  });
}

const ONE_CLICK = 'List-Unsubscribe=One-Click';

for (const engine of ENGINES) {
  test(`[${engine}] a user reads and replaces their own preferences, audited as them`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const empty = await h.api('GET', '/v1/me/preferences', undefined, alice.token);
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual(empty.body, { preferences: [] });

    const wanted = [
      { category: 'po.*', channel: 'email', enabled: false },
      { category: '*', channel: 'sms', enabled: false },
      { category: 'po.approval_requested', channel: 'email', enabled: true },
      { category: '*', channel: '*', enabled: true },
    ];
    const put = await h.api('PUT', '/v1/me/preferences', { preferences: wanted }, alice.token);
    assert.equal(put.status, 200, put.text);
    const sorted = [wanted[3], wanted[1], wanted[0], wanted[2]];
    assert.deepEqual(put.body, { preferences: sorted });
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: sorted,
    });

    const replaced = await h.api('PUT', '/v1/me/preferences', { preferences: [wanted[1]] }, alice.token);
    assert.deepEqual(replaced.body, { preferences: [wanted[1]] });
    const cleared = await h.api('PUT', '/v1/me/preferences', { preferences: [] }, alice.token);
    assert.deepEqual(cleared.body, { preferences: [] });

    const entries = await audited(h, 'preferences.updated', alice.id);
    assert.equal(entries.length, 3);
    assert.ok(entries.every((e) => e.actor === `user:${alice.id}`));
    assert.deepEqual(entries[1]!.data, { preferences: [wanted[1]] });
  });

  test(`[${engine}] a user token reaches only its own preferences`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const bob = await member(h);
    const hers = [{ category: 'po.*', channel: 'email', enabled: false }];
    await h.api('PUT', '/v1/me/preferences', { preferences: hers }, alice.token);

    await h.api('PUT', '/v1/me/preferences', { preferences: [] }, bob.token);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, bob.token)).body, {
      preferences: [],
    });
    for (const [method, body] of [
      ['GET', undefined],
      ['PUT', { preferences: [] }],
    ] as const) {
      const res = await h.api(method, `/v1/users/${alice.id}/preferences`, body, bob.token);
      assert.equal(res.status, 403, `${method}: ${res.text}`);
    }
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: hers,
    });
    const asAdmin = await h.api('GET', '/v1/me/preferences');
    assert.equal(asAdmin.status, 403, 'the admin has no preferences of its own');
    assert.equal((await h.api('GET', '/v1/me/preferences', undefined, null)).status, 401);
  });

  test(`[${engine}] the admin reads and replaces any user's preferences; unknown users are 404`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const prefs = [{ category: 'invoice.*', channel: 'push', enabled: false }];
    const put = await h.api('PUT', `/v1/users/${alice.id}/preferences`, { preferences: prefs });
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.body, { preferences: prefs });
    assert.deepEqual((await h.api('GET', `/v1/users/${alice.id}/preferences`)).body, { preferences: prefs });
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: prefs,
    });
    const [entry] = await audited(h, 'preferences.updated', alice.id);
    assert.equal(entry?.actor, 'admin');

    for (const [method, body] of [
      ['GET', undefined],
      ['PUT', { preferences: prefs }],
    ] as const) {
      const res = await h.api(method, '/v1/users/nobody/preferences', body);
      assert.equal(res.status, 404, `${method}: ${res.text}`);
      assert.equal(res.body.code, 'not_found');
    }
  });

  test(`[${engine}] rejects inapp, unknown channels, bad categories, repeats and too many entries`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const cases: [unknown, string, RegExp?][] = [
      [
        [{ category: 'po.*', channel: 'inapp', enabled: false }],
        'body.preferences.0.channel',
        /inbox always keeps a record/,
      ],
      [[{ category: 'po.*', channel: 'pager', enabled: false }], 'body.preferences.0.channel', /known/],
      [[{ category: 'po. approval', channel: 'email', enabled: false }], 'body.preferences.0.category'],
      [[{ category: '', channel: 'email', enabled: false }], 'body.preferences.0.category'],
      [[{ category: 'po.*', channel: 'email' }], 'body.preferences.0.enabled'],
      [[{ category: 'po.*', channel: 'email', enabled: false, extra: 1 }], 'body.preferences.0.extra'],
      [
        [
          { category: 'po.*', channel: 'email', enabled: false },
          { category: 'po.*', channel: 'sms', enabled: false },
          { category: 'po.*', channel: 'email', enabled: true },
        ],
        'body.preferences.2',
        /repeats body\.preferences\.0/,
      ],
      [
        Array.from({ length: 201 }, (_, i) => ({ category: `t${i}`, channel: 'email', enabled: false })),
        'body.preferences',
      ],
    ];
    for (const [preferences, field, message] of cases) {
      for (const url of ['/v1/me/preferences', `/v1/users/${alice.id}/preferences`]) {
        const token = url.startsWith('/v1/me') ? alice.token : undefined;
        const res = await h.api('PUT', url, { preferences }, token);
        assert.equal(res.status, 400, `${url} ${field}: ${res.text}`);
        assert.equal(res.body.code, 'validation_failed');
        assert.ok(
          res.body.errors.some((e: { field: string }) => e.field === field),
          `${field}: ${res.text}`,
        );
        if (message) assert.match(res.body.detail, message);
      }
    }
    assert.equal((await h.api('PUT', '/v1/me/preferences', {}, alice.token)).status, 400);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [],
    });
  });

  test(`[${engine}] a channel turned off is skipped by routing, except for critical events`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const alice = await member(h);
    const rule = await h.api('PUT', '/v1/rules/po', {
      match: { types: ['po.*'] },
      recipients: { users: [alice.id] },
      channels: ['inapp', 'email'],
    });
    assert.equal(rule.status, 201, rule.text);
    const off = [{ category: 'po.*', channel: 'email', enabled: false }];
    assert.equal((await h.api('PUT', '/v1/me/preferences', { preferences: off }, alice.token)).status, 200);

    const publish = async (severity: string) => {
      const res = await h.api(
        'POST',
        '/v1/events',
        { type: 'po.approval_requested', title: 'PO 17 needs approval', severity },
        source.api_key,
      );
      assert.equal(res.status, 202, res.text);
      return res.body.id as string;
    };
    const normal = await publish('info');
    const critical = await publish('critical');
    while ((await h.workers.router.runOnce()) > 0);

    const routed = (await h.api('GET', `/v1/events/${normal}`)).body;
    assert.deepEqual(routed.routing.channels_skipped, [
      { user_id: alice.id, channel: 'email', reason: 'turned off in preferences' },
    ]);
    assert.deepEqual(
      routed.deliveries.filter((d: { channel: string }) => d.channel === 'email'),
      [],
    );
    assert.deepEqual(
      routed.notifications.map((n: { user_id: string; channels: string[] }) => [n.user_id, n.channels]),
      [[alice.id, ['inapp']]],
      'the inbox still gets it',
    );

    const urgent = (await h.api('GET', `/v1/events/${critical}`)).body;
    assert.deepEqual(urgent.routing.channels_skipped, []);
    const emails = urgent.deliveries.filter((d: { channel: string }) => d.channel === 'email');
    assert.equal(emails.length, 1);
    assert.equal(emails[0].user_id, alice.id);
  });

  test(`[${engine}] an unsubscribe link's page changes nothing; its one-click POST turns email off`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const url = await unsubscribeLink(h, alice.id, 'po.approval_requested');

    for (const method of ['GET', 'HEAD'] as const) {
      const page = await h.app.inject({ method, url });
      assert.equal(page.statusCode, 200, page.body);
      assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
      assert.equal(page.headers['cache-control'], 'no-store');
    }
    const page = await h.app.inject({ method: 'GET', url });
    assert.match(page.body, /emails about <strong>po\.approval_requested<\/strong>/);
    assert.match(page.body, /<form method="post" action="[^"]+">/);
    assert.match(page.body, /name="List-Unsubscribe" value="One-Click"/);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [],
    });

    const done = await post(h, url, ONE_CLICK);
    assert.equal(done.statusCode, 200, done.body);
    assert.equal(done.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(done.body, /no more emails about <strong>po\.approval_requested<\/strong>/);
    const off = { category: 'po.approval_requested', channel: 'email', enabled: false };
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [off],
    });

    assert.equal((await post(h, url, ONE_CLICK)).statusCode, 200, 'a second click is fine');
    assert.equal((await post(h, url)).statusCode, 200, 'so is an empty body');
    const entries = await audited(h, 'preferences.unsubscribed', alice.id);
    assert.deepEqual(entries, [
      {
        ...entries[0],
        actor: `user:${alice.id}`,
        data: { category: 'po.approval_requested', channel: 'email', via: 'one-click' },
      },
    ]);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [off],
    });
  });

  test(`[${engine}] a one-click POST with an empty body unsubscribes and keeps other preferences`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const kept = { category: '*', channel: 'sms', enabled: false };
    await h.api('PUT', '/v1/me/preferences', { preferences: [kept] }, alice.token);
    const res = await post(h, await unsubscribeLink(h, alice.id, 'invoice.failed'));
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [kept, { category: 'invoice.failed', channel: 'email', enabled: false }],
    });
  });

  test(`[${engine}] tampered or foreign links answer 400 invalid_link and change nothing`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const url = await unsubscribeLink(h, alice.id, 'po.approval_requested');
    const token = url.split('/').at(-1)!;
    const [body, mac] = token.split('.') as [string, string];
    const forged = Buffer.from(JSON.stringify({ u: alice.id, c: '*', ch: 'email' })).toString('base64url');
    const otherSecret = signToken(Buffer.alloc(32, 7), { u: alice.id, c: 'po.x', ch: 'email' });
    for (const bad of [
      `${forged}.${mac}`,
      `${body}.${mac.slice(0, -2)}AA`,
      body,
      otherSecret,
      'not-a-token',
      '',
    ]) {
      for (const method of ['GET', 'POST'] as const) {
        const res =
          method === 'GET'
            ? await h.app.inject({ method, url: `/v1/unsubscribe/${bad}` })
            : await post(h, `/v1/unsubscribe/${bad}`, ONE_CLICK);
        assert.equal(res.statusCode, 400, `${method} ${bad}: ${res.body}`);
        assert.match(String(res.headers['content-type']), /application\/problem\+json/);
        assert.equal(res.json().code, 'invalid_link');
      }
    }
    const browser = await h.app.inject({
      method: 'GET',
      url: `/v1/unsubscribe/${forged}.${mac}`,
      headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
    });
    assert.equal(browser.statusCode, 400);
    assert.equal(browser.headers['content-type'], 'text/html; charset=utf-8');
    assert.match(browser.body, /not valid/);

    const wrongChannel = await unsubscribeLink(h, alice.id, 'po.x', 'inapp');
    assert.equal((await post(h, wrongChannel, ONE_CLICK)).statusCode, 400);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [],
    });
  });

  test(`[${engine}] a one-click POST may be multipart/form-data, as in RFC 8058's example`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const url = await unsubscribeLink(h, alice.id, 'po.approval_requested');
    const boundary = '---FormBoundaryjWmhtjORrn';
    const multipart = (payload: string) =>
      h.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
        payload,
      });
    const broken = await multipart('no parts at all');
    assert.equal(broken.statusCode, 400, broken.body);
    assert.equal(broken.json().code, 'validation_failed');

    const res = await multipart(
      [
        `--${boundary}`,
        'Content-Disposition: form-data; name="List-Unsubscribe"',
        '',
        'One-Click',
        `--${boundary}--`,
        '',
      ].join('\r\n'),
    );
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [{ category: 'po.approval_requested', channel: 'email', enabled: false }],
    });
  });

  test(`[${engine}] a one-click POST takes only List-Unsubscribe=One-Click as a form`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const url = await unsubscribeLink(h, alice.id, 'po.approval_requested');
    const json = await h.app.inject({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: '{"List-Unsubscribe":"One-Click"}',
    });
    assert.equal(json.statusCode, 415, json.body);
    assert.equal(json.json().code, 'unsupported_media_type');
    const other = await post(h, url, 'List-Unsubscribe=Later');
    assert.equal(other.statusCode, 400, other.body);
    assert.equal(other.json().code, 'validation_failed');
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, alice.token)).body, {
      preferences: [],
    });
  });

  test(`[${engine}] the link of a deleted user confirms and writes nothing`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const alice = await member(h);
    const url = await unsubscribeLink(h, alice.id, 'po.approval_requested');
    assert.equal((await h.api('DELETE', `/v1/users/${alice.id}`)).status, 204);
    const res = await post(h, url, ONE_CLICK);
    assert.equal(res.statusCode, 200, res.body);
    assert.deepEqual(await audited(h, 'preferences.unsubscribed', alice.id), []);
    const rows = await h.store.db.selectFrom('preferences').selectAll().execute();
    assert.deepEqual(rows, []);
  });
}

test('the OpenAPI document describes preferences and the unsubscribe link as {token}', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const doc = (await h.api('GET', '/openapi.json', undefined, null)).body;
  assert.ok(doc.paths['/v1/me/preferences']?.put);
  assert.ok(doc.paths['/v1/users/{id}/preferences']?.get);
  const unsubscribe = doc.paths['/v1/unsubscribe/{token}'];
  assert.ok(unsubscribe?.get && unsubscribe.post, Object.keys(doc.paths).join(', '));
  assert.deepEqual(
    unsubscribe.post.parameters.map((p: { name: string; in: string }) => [p.in, p.name]),
    [['path', 'token']],
  );
  assert.equal(doc.paths['/v1/unsubscribe/{*}'], undefined);
});
