import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Message } from '../src/channels/channel.ts';
import { twilioProvider, twilioSignature } from '../src/channels/sms.ts';
import type { Engine } from '../src/db/engine.ts';
import { createOutboundAgent } from '../src/delivery/ssrf.ts';
import { changesSince } from '../src/notifications/notifications.repo.ts';
import { type CreatedUser, createSource, createUser, uniqueId, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { type SmsPeer, startSmsPeer } from './peers/sms.ts';
import { type SmtpPeer, startSmtpPeer } from './peers/smtp.ts';

/*
 * SMS delivery receipts end to end: an event is routed to a person's phone, Herald sends the SMS to the Twilio
 * stand-in with a StatusCallback, and the stand-in reports the message's fate to a listening Herald the way
 * Twilio does (a signed form POST). Herald's public URL is not where it listens, as behind a proxy: the
 * stand-in signs the public URL and sends the request to the listening address.
 */

const PUBLIC_URL = 'https://herald.example.com';
const CALLBACK = `${PUBLIC_URL}/v1/integrations/sms/status`;

interface Setup {
  h: TestHerald;
  sms: SmsPeer;
  /** Where Herald listens (what the proxy forwards to). */
  via: string;
  user: CreatedUser;
  token: string;
  publish: () => Promise<void>;
}

async function setup(t: TestContext, engine: Engine, channels: unknown[] = ['inapp', 'sms']): Promise<Setup> {
  const h = await startHerald(t, engine, { workers: false, env: { HERALD_PUBLIC_URL: PUBLIC_URL } });
  const via = await h.listen();
  const sms = await startSmsPeer(t);
  const config = {
    base_url: sms.baseUrl,
    account_sid: sms.accountSid,
    auth_token: sms.authToken,
    from: sms.from,
  };
  assert.equal((await h.api('PUT', '/v1/providers/twilio', { kind: 'twilio', config })).status, 201);
  const user = await createUser(h, { phone: '+41791234567', email: 'ada@example.com' });
  const rule = await h.api('PUT', `/v1/rules/${uniqueId('rule')}`, {
    match: { types: ['po.*'] },
    recipients: { users: [user.id] },
    channels,
  });
  assert.equal(rule.status, 201, rule.text);
  const source = await createSource(h);
  const publish = async () => {
    const res = await h.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { authorization: `Bearer ${source.api_key}` },
      payload: { type: 'po.approval_requested', title: 'PO 4711 needs your approval' },
    });
    assert.equal(res.statusCode, 202, res.body);
  };
  return { h, sms, via, user, token: await userToken(h, user.id), publish };
}

/** Routes everything waiting, then lets the dispatcher run until nothing more is due now. */
async function deliver(h: TestHerald): Promise<void> {
  while ((await h.workers.router.runOnce()) > 0);
  while ((await h.workers.dispatcher.runOnce()) > 0);
}

/** Publishes an event and sends its SMS; returns the notification's id and the message's sid. */
async function sendSms(s: Setup): Promise<{ notificationId: string; sid: string }> {
  await s.publish();
  await deliver(s.h);
  const [message] = await s.sms.waitFor(1);
  const inbox = await s.h.api('GET', '/v1/me/notifications', undefined, s.token);
  return { notificationId: inbox.body.items[0].id, sid: message!.sid };
}

/** How the notification fared on each channel, as its recipient sees it. */
async function channels(s: Setup, notificationId: string) {
  const res = await s.h.api('GET', `/v1/me/notifications/${notificationId}`, undefined, s.token);
  assert.equal(res.status, 200, res.text);
  const deliveries = res.body.deliveries as { channel: string; status: string; last_error: string | null }[];
  return Object.fromEntries(
    deliveries.map((d) => [d.channel, { status: d.status, last_error: d.last_error }]),
  );
}

async function audited(h: TestHerald, action: string) {
  const res = await h.api('GET', `/v1/audit?action=${action}`);
  assert.equal(res.status, 200, res.text);
  return res.body.items as { subject_id: string; data: Record<string, unknown> }[];
}

test("Twilio's signature matches the example of its security documentation", () => {
  const params = new URLSearchParams({
    CallSid: 'CA1234567890ABCDE',
    Caller: '+12349013030',
    Digits: '1234',
    From: '+12349013030',
    To: '+18005551212',
  });
  assert.equal(
    twilioSignature('12345', 'https://mycompany.com/myapp.php?foo=1&bar=2', params),
    '0/KCTR6DLpKmkAf8muzZqo1nDgQ=',
  );
});

test('the status callback receiver is in the OpenAPI document, without bearer security', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const doc = (await h.api('GET', '/openapi.json', undefined, null)).body;
  const route = doc.paths['/v1/integrations/sms/status']?.post;
  assert.ok(route, 'missing /v1/integrations/sms/status');
  assert.equal(route.security, undefined);
  assert.ok(route.responses['204']);
});

for (const engine of ENGINES) {
  test(`[${engine}] an SMS the handset received shows as delivered once the provider's signed callback says so`, async (t) => {
    const s = await setup(t, engine);
    const { notificationId, sid } = await sendSms(s);
    assert.equal(s.sms.messages[0]!.statusCallback, CALLBACK);
    assert.deepEqual(await channels(s, notificationId), { sms: { status: 'sent', last_error: null } });

    // Statuses on the way are acknowledged and change nothing.
    assert.equal((await s.sms.reportStatus(sid, 'sent', { via: s.via })).status, 204);
    assert.equal((await channels(s, notificationId))['sms']!.status, 'sent');

    const [before] = await changesSince(s.h.store.db, s.user.id, 0, 10);
    const delivered = await s.sms.reportStatus(sid, 'delivered', { via: s.via });
    assert.equal(delivered.status, 204, delivered.body);
    assert.deepEqual(await channels(s, notificationId), { sms: { status: 'delivered', last_error: null } });
    // The inbox stream reads changes after its last position: the notification is among them again.
    const changed = await changesSince(s.h.store.db, s.user.id, before!.seq, 10);
    assert.deepEqual(
      changed.map((n) => n.id),
      [notificationId],
    );

    // Twilio may send a callback more than once: the second changes nothing and is not audited again.
    assert.equal((await s.sms.reportStatus(sid, 'delivered', { via: s.via })).status, 204);
    const entries = await audited(s.h, 'delivery.delivered');
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.data['provider_ref'], sid);
    assert.equal(entries[0]!.data['notification_id'], notificationId);
  });

  test(`[${engine}] undelivered marks the SMS failed with the carrier's error and sends the fallback channel`, async (t) => {
    const s = await setup(t, engine, ['inapp', { fallback: ['sms', 'email'] }]);
    const smtp: SmtpPeer = await startSmtpPeer(t);
    const relay = { kind: 'smtp', config: { url: smtp.url, from: 'herald@example.com' } };
    assert.equal((await s.h.api('PUT', '/v1/providers/relay', relay)).status, 201);
    const { notificationId, sid } = await sendSms(s);
    assert.equal(smtp.messages.length, 0, 'the SMS was accepted: no fallback yet');

    const answer = await s.sms.reportStatus(sid, 'undelivered', { via: s.via, errorCode: 30003 });
    assert.equal(answer.status, 204, answer.body);
    const sms = (await channels(s, notificationId))['sms']!;
    assert.equal(sms.status, 'failed');
    assert.match(sms.last_error ?? '', /^30003: Unreachable destination handset \(.*undelivered/);

    await deliver(s.h);
    assert.equal((await channels(s, notificationId))['email']?.status, 'sent');
    const [mail] = await smtp.waitForMessages(1);
    assert.deepEqual(mail!.envelope.to, ['ada@example.com']);
    const [entry] = await audited(s.h, 'delivery.undelivered');
    assert.equal(entry!.data['error_code'], '30003');
    assert.equal(entry!.data['fallback'], true);

    // A late `delivered` for a message given up on leaves it failed.
    assert.equal((await s.sms.reportStatus(sid, 'delivered', { via: s.via })).status, 204);
    assert.equal((await channels(s, notificationId))['sms']!.status, 'failed');
  });

  test(`[${engine}] failed without an error code is recorded as such`, async (t) => {
    const s = await setup(t, engine);
    const { notificationId, sid } = await sendSms(s);
    assert.equal((await s.sms.reportStatus(sid, 'failed', { via: s.via })).status, 204);
    assert.deepEqual(await channels(s, notificationId), {
      sms: { status: 'failed', last_error: 'failed: the provider reported it failed after accepting it' },
    });
  });

  test(`[${engine}] a callback not signed with the account's auth token gets 403 and changes nothing`, async (t) => {
    const s = await setup(t, engine);
    const { notificationId, sid } = await sendSms(s);
    for (const report of [
      { authToken: 'not-the-auth-token' },
      { authToken: null },
      // Signed as `sent`, altered on the way.
      { tamper: { MessageStatus: 'delivered' } },
    ]) {
      const answer = await s.sms.reportStatus(sid, 'sent', { via: s.via, ...report });
      assert.equal(answer.status, 403, JSON.stringify(report));
      assert.match(answer.contentType ?? '', /^application\/problem\+json/);
      assert.equal(JSON.parse(answer.body).code, 'forbidden');
    }
    // Signed for another URL than the one Herald told Twilio: a replay from elsewhere.
    const moved = await s.h.api('PUT', '/v1/providers/twilio', {
      kind: 'twilio',
      config: {
        base_url: s.sms.baseUrl,
        account_sid: s.sms.accountSid,
        auth_token: '********',
        from: s.sms.from,
        status_callback: 'https://proxy.example.com/twilio/status',
      },
    });
    assert.equal(moved.status, 200, moved.text);
    assert.equal((await s.sms.reportStatus(sid, 'delivered', { via: s.via })).status, 403);
    assert.deepEqual(await channels(s, notificationId), { sms: { status: 'sent', last_error: null } });
    assert.equal((await audited(s.h, 'delivery.*')).filter((e) => e.data['provider_ref']).length, 0);
  });

  test(`[${engine}] a signed callback for a message Herald did not send is answered 204 and ignored`, async (t) => {
    const s = await setup(t, engine);
    const { notificationId } = await sendSms(s);
    // Another application sending from the same account, with Herald's callback URL.
    const agent = createOutboundAgent({ allow: ['127.0.0.1/32'], connectTimeoutMs: 5000 });
    t.after(() => agent.close());
    const other = twilioProvider.create(
      twilioProvider.validate({
        base_url: s.sms.baseUrl,
        account_sid: s.sms.accountSid,
        auth_token: s.sms.authToken,
        from: s.sms.from,
      }),
      { dispatcher: agent, timeoutMs: 10_000, now: () => Date.now(), publicUrl: PUBLIC_URL },
    );
    const sent = await other.send(message(), '+41790000000');
    assert.equal(sent.outcome, 'succeeded');
    const answer = await s.sms.reportStatus(sent.providerMessageId!, 'delivered', { via: s.via });
    assert.equal(answer.status, 204, answer.body);
    assert.equal((await channels(s, notificationId))['sms']!.status, 'sent');
    assert.equal((await audited(s.h, 'delivery.delivered')).length, 0);
  });

  test(`[${engine}] a malformed callback gets 400, and one that is not a form 415`, async (t) => {
    const s = await setup(t, engine);
    const { notificationId, sid } = await sendSms(s);
    const missing = await s.sms.reportStatus(sid, 'delivered', {
      via: s.via,
      tamper: { MessageSid: null, AccountSid: '' },
    });
    assert.equal(missing.status, 400);
    assert.match(missing.contentType ?? '', /^application\/problem\+json/);
    const problem = JSON.parse(missing.body);
    assert.equal(problem.code, 'validation_failed');
    assert.deepEqual(
      problem.errors.map((e: { field: string }) => e.field),
      ['MessageSid', 'AccountSid'],
    );
    const badCode = await s.sms.reportStatus(sid, 'undelivered', { via: s.via, tamper: { ErrorCode: 'x' } });
    assert.equal(badCode.status, 400);

    for (const headers of [{ 'content-type': 'application/x-www-form-urlencoded' }, {}]) {
      const empty = await fetch(`${s.via}/v1/integrations/sms/status`, { method: 'POST', headers });
      assert.equal(empty.status, 400, JSON.stringify(headers));
    }
    const json = await fetch(`${s.via}/v1/integrations/sms/status`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ MessageSid: sid, MessageStatus: 'delivered' }),
    });
    assert.equal(json.status, 415);
    assert.equal(((await json.json()) as { code: string }).code, 'unsupported_media_type');
    assert.equal((await channels(s, notificationId))['sms']!.status, 'sent');
  });

  test(`[${engine}] a kept secret ("********") stays with the host it was given for`, async (t) => {
    const s = await setup(t, engine);
    const put = (config: Record<string, unknown>) =>
      s.h.api('PUT', '/v1/providers/twilio', { kind: 'twilio', config });
    const config = { base_url: s.sms.baseUrl, account_sid: s.sms.accountSid, from: s.sms.from };
    assert.equal((await put({ ...config, auth_token: '********', from: '+15005550006' })).status, 200);
    const moved = await put({ ...config, auth_token: '********', base_url: 'https://collector.example.com' });
    assert.equal(moved.status, 400, moved.text);
    assert.equal(moved.body.code, 'invalid_channel_config');
    assert.match(moved.body.detail, /collector\.example\.com/);
    // Sending the secret again moves it knowingly.
    const resent = await put({
      ...config,
      auth_token: 'another-token',
      base_url: 'https://collector.example.com',
    });
    assert.equal(resent.status, 200, resent.text);

    const smtp = (url: string) =>
      s.h.api('PUT', '/v1/providers/mail', { kind: 'smtp', config: { url, from: 'herald@example.com' } });
    assert.equal((await smtp('smtp://herald:s3cret@relay.example.com:587')).status, 201);
    assert.equal((await smtp('smtp://herald:********@relay.example.com:587')).status, 200);
    const elsewhere = await smtp('smtp://herald:********@mail.attacker.example:587');
    assert.equal(elsewhere.status, 400, elsewhere.text);
    assert.equal(elsewhere.body.code, 'invalid_channel_config');
  });
}

function message(): Message {
  return {
    id: 'msg_other',
    eventId: 'evt_other',
    notificationId: null,
    type: 'other.app',
    severity: 'info',
    title: 'Not from Herald',
    text: '',
    html: null,
    url: null,
    actions: [],
    locale: null,
    unsubscribeUrl: null,
    expiresAt: null,
    data: {},
  };
}
