import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redactSecrets } from '../src/audit/redact.ts';
import { createSource, createUser, uniqueId, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';

/*
 * Secrets never in logs: the audit log (read by many operators) never holds a signing secret, a header value, a
 * chat webhook URL's path or a URL's query; ordinary reads show them as "********"; the signing secrets are
 * revealed on purpose, to admins only, and each reveal is audited. Nothing here is sent: the URLs point at a
 * closed port on loopback.
 */

const SIGNING_SECRET = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
const NEW_SIGNING_SECRET = `whsec_${Buffer.alloc(32, 8).toString('base64')}`;
const AUTHORIZATION = 'Bearer desk-token-4b1d';
const URL_TOKEN = 'query-token-9f2e';
const WEBHOOK_URL = `http://127.0.0.1:9/hooks/herald?code=${URL_TOKEN}`;
const SLACK_PATH = '/services/T0001/B0001/slack-path-secret-77aa';
const SLACK_URL = `http://127.0.0.1:9${SLACK_PATH}`;

/** The whole audit log as the API answers it. */
async function auditText(h: TestHerald): Promise<string> {
  const res = await h.api('GET', '/v1/audit?limit=200');
  assert.equal(res.status, 200, res.text);
  return res.text;
}

function assertNone(text: string, secrets: string[], where: string): void {
  for (const secret of secrets) assert.ok(!text.includes(secret), `${where} shows ${secret}: ${text}`);
}

async function storedEndpoint(h: TestHerald, id: string) {
  return h.store.db.selectFrom('endpoints').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
}

/** A GET answer as a PUT body: what an admin's script sends back after changing one thing. */
function asPut(got: Record<string, unknown>): Record<string, unknown> {
  const { id, status, disabled_reason, circuit, created_at, updated_at, ...body } = got;
  return body;
}

for (const engine of ENGINES) {
  test(`[${engine}] an endpoint's signing secret, header values and URL query stay out of the audit log and of reads`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    const secrets = [SIGNING_SECRET, NEW_SIGNING_SECRET, AUTHORIZATION, URL_TOKEN];

    const created = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: WEBHOOK_URL,
      types: ['*'],
      secret: SIGNING_SECRET,
      headers: { Authorization: AUTHORIZATION, 'X-Tenant': 'acme' },
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.secret, SIGNING_SECRET, 'the answer that set the secret shows it');
    assert.deepEqual(created.body.headers, { Authorization: '********', 'X-Tenant': '********' });

    const got = await h.api('GET', `/v1/endpoints/${id}`);
    assert.equal(got.body.secret, '********');
    assert.equal(got.body.url, WEBHOOK_URL, 'a webhook URL reads as given');
    const listed = await h.api('GET', '/v1/endpoints');
    const updated = await h.api('PUT', `/v1/endpoints/${id}`, { ...asPut(got.body), types: ['case.*'] });
    assert.equal(updated.status, 200, updated.text);
    for (const [where, res] of [
      ['GET', got],
      ['the list', listed],
      ['a PUT that left the secrets alone', updated],
    ] as const) {
      assertNone(res.text.replace(WEBHOOK_URL, ''), secrets, where);
    }

    const stored = await storedEndpoint(h, id);
    assert.equal(stored.secret, SIGNING_SECRET, '"********" keeps the secret');
    assert.deepEqual(JSON.parse(stored.headers!), { Authorization: AUTHORIZATION, 'X-Tenant': 'acme' });
    assert.equal(stored.types, '["case.*"]');

    const rotated = await h.api('PUT', `/v1/endpoints/${id}`, {
      ...asPut(got.body),
      secret: NEW_SIGNING_SECRET,
      headers: { Authorization: 'Bearer desk-token-rotated', 'X-Tenant': '********' },
    });
    assert.equal(rotated.status, 200, rotated.text);
    assert.equal(rotated.body.secret, NEW_SIGNING_SECRET);
    secrets.push('desk-token-rotated');

    const audit = await auditText(h);
    assertNone(audit, secrets, 'the audit log');
    const entries = (await h.api('GET', `/v1/audit?subject_id=${id}`)).body.items as {
      action: string;
      data: Record<string, unknown>;
    }[];
    const [rotation, change, creation] = entries;
    assert.equal(creation!.action, 'endpoint.created');
    assert.equal(creation!.data['url'], 'http://127.0.0.1:9/hooks/herald?********');
    assert.deepEqual(creation!.data['headers'], ['Authorization', 'X-Tenant']);
    assert.equal(change!.action, 'endpoint.updated');
    assert.equal(change!.data['secret_changed'], false);
    assert.deepEqual(change!.data['headers_changed'], []);
    assert.equal(rotation!.data['secret_changed'], true);
    assert.deepEqual(rotation!.data['headers_changed'], ['Authorization']);
  });

  test(`[${engine}] a chat endpoint's webhook URL reads as scheme and host, and sent back so it is kept`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('slack');
    const created = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: SLACK_URL,
      types: ['*'],
      kind: 'slack',
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.url, 'http://127.0.0.1:9/********');

    const got = await h.api('GET', `/v1/endpoints/${id}`);
    const listed = await h.api('GET', '/v1/endpoints');
    const off = await h.api('PUT', `/v1/endpoints/${id}`, { ...asPut(got.body), enabled: false });
    assert.equal(off.status, 200, off.text);
    assert.equal(off.body.status, 'disabled');
    for (const text of [created.text, got.text, listed.text, off.text, await auditText(h)]) {
      assertNone(text, [SLACK_PATH], 'a read or the audit log');
    }
    assert.equal((await storedEndpoint(h, id)).url, SLACK_URL);

    const moved = await h.api('PUT', `/v1/endpoints/${id}`, {
      ...asPut(got.body),
      url: 'http://127.0.0.1:9/services/T0001/B0002/another',
    });
    assert.equal(moved.status, 200, moved.text);
    const entry = (await h.api('GET', `/v1/audit?subject_id=${id}&limit=1`)).body.items[0];
    assert.equal(entry.data.url, 'http://127.0.0.1:9/********');
    assert.equal(entry.data.url_changed, true);
  });

  test(`[${engine}] "********" keeps a stored value only where there is one, and header values only while the URL stays`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    const first = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: 'http://127.0.0.1:9/a',
      types: ['*'],
      headers: { Authorization: AUTHORIZATION },
    });
    assert.equal(first.status, 201, first.text);

    const elsewhere = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: 'http://127.0.0.1:9/collect',
      types: ['*'],
      headers: { Authorization: '********' },
    });
    assert.equal(elsewhere.status, 400, elsewhere.text);
    assert.equal(elsewhere.body.errors[0].field, 'body.headers.Authorization');
    const unknownHeader = await h.api('PUT', `/v1/endpoints/${id}`, {
      url: 'http://127.0.0.1:9/a',
      types: ['*'],
      headers: { 'X-Other': '********' },
    });
    assert.equal(unknownHeader.status, 400, unknownHeader.text);
    assert.equal(unknownHeader.body.errors[0].field, 'body.headers.X-Other');
    const newChat = await h.api('PUT', `/v1/endpoints/${uniqueId('slack')}`, {
      url: 'http://127.0.0.1:9/********',
      types: ['*'],
      kind: 'slack',
    });
    assert.equal(newChat.status, 400, newChat.text);
    assert.equal(newChat.body.errors[0].field, 'body.url');
    assert.equal(JSON.parse((await storedEndpoint(h, id)).headers!).Authorization, AUTHORIZATION);

    // On a new endpoint the placeholder is the same as leaving the secret out: one is generated.
    const generated = await h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, {
      url: 'http://127.0.0.1:9/a',
      types: ['*'],
      secret: '********',
    });
    assert.equal(generated.status, 201, generated.text);
    assert.match(generated.body.secret, /^whsec_/);
  });

  test(`[${engine}] an endpoint's signing secret is revealed to the admin only, and the reveal is audited`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const id = uniqueId('ep');
    const created = await h.api('PUT', `/v1/endpoints/${id}`, { url: 'http://127.0.0.1:9/a', types: ['*'] });
    const revealed = await h.api('GET', `/v1/endpoints/${id}/secret`);
    assert.equal(revealed.status, 200, revealed.text);
    assert.deepEqual(revealed.body, { secret: created.body.secret });

    const source = await createSource(h);
    const user = await createUser(h);
    for (const token of [source.api_key, await userToken(h, user.id)]) {
      const refused = await h.api('GET', `/v1/endpoints/${id}/secret`, undefined, token);
      assert.equal(refused.status, 403, refused.text);
      assertNone(refused.text, [created.body.secret], 'a refusal');
    }
    assert.equal((await h.api('GET', `/v1/endpoints/${id}/secret`, undefined, null)).status, 401);
    assert.equal((await h.api('GET', '/v1/endpoints/nope/secret')).status, 404);

    const audit = await h.api('GET', `/v1/audit?action=endpoint.secret_revealed&subject_id=${id}`);
    assert.equal(audit.body.items.length, 1);
    assertNone(await auditText(h), [created.body.secret], 'the audit log');
  });

  test(`[${engine}] a source's callback secret is shown when it is created and on purpose, never in reads or the audit log`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const created = await createSource(h, { callback_url: `http://127.0.0.1:9/cb?token=${URL_TOKEN}` });
    const secret = (created as typeof created & { callback_secret: string }).callback_secret;
    assert.match(secret, /^whsec_/);

    const got = await h.api('GET', `/v1/sources/${created.id}`);
    assert.equal(got.body.callback_secret, '********');
    const listed = await h.api('GET', '/v1/sources');
    const patched = await h.api('PATCH', `/v1/sources/${created.id}`, {
      callback_url: `http://127.0.0.1:9/cb2?token=${URL_TOKEN}`,
    });
    assert.equal(patched.status, 200, patched.text);
    for (const [where, text] of [
      ['GET', got.text],
      ['the list', listed.text],
      ['PATCH', patched.text],
    ] as const) {
      assertNone(text, [secret], where);
    }

    const revealed = await h.api('GET', `/v1/sources/${created.id}/callback-secret`);
    assert.deepEqual(revealed.body, { callback_secret: secret });
    const refused = await h.api(
      'GET',
      `/v1/sources/${created.id}/callback-secret`,
      undefined,
      created.api_key,
    );
    assert.equal(refused.status, 403);
    assert.equal((await h.api('GET', '/v1/sources/nope/callback-secret')).status, 404);

    const audit = await auditText(h);
    assertNone(audit, [secret, URL_TOKEN, created.api_key], 'the audit log');
    const actions = (await h.api('GET', `/v1/audit?subject_id=${created.id}`)).body.items.map(
      (e: { action: string; data: { callback_url?: string } }) => [e.action, e.data?.callback_url],
    );
    assert.deepEqual(actions, [
      ['source.callback_secret_revealed', undefined],
      ['source.updated', 'http://127.0.0.1:9/cb2?********'],
      ['source.created', 'http://127.0.0.1:9/cb?********'],
    ]);
  });

  test(`[${engine}] provider secrets stay out of the audit log`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const authToken = 'twilio-auth-token-5c3d';
    const res = await h.api('PUT', '/v1/providers/sms', {
      kind: 'twilio',
      config: {
        account_sid: 'AC00000000000000000000000000000001',
        auth_token: authToken,
        from: '+15550001',
        base_url: 'http://127.0.0.1:9',
      },
    });
    assert.equal(res.status, 201, res.text);
    assertNone(res.text, [authToken], 'the answer');
    assertNone(await auditText(h), [authToken], 'the audit log');
  });
}

test('an admin change records no value under a key that names a secret, at any depth', () => {
  assert.deepEqual(
    redactSecrets({
      name: 'x',
      secret: 's1',
      nested: [{ callback_secret: 's2', password: 's3', token: 's4', token_id: 'tok_1' }],
      secret_changed: true,
      at: null,
    }),
    {
      name: 'x',
      secret: '********',
      nested: [{ callback_secret: '********', password: '********', token: '********', token_id: 'tok_1' }],
      secret_changed: true,
      at: null,
    },
  );
});
