import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import type { Engine } from '../src/db/engine.ts';
import { type CreatedSource, createSource, createUser, uniqueId, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { startApnsPeer } from './peers/apns.ts';
import { startChatPeer } from './peers/chat.ts';
import { startFcmPeer } from './peers/fcm.ts';
import { startPushService } from './peers/push-service.ts';
import { startSmsPeer } from './peers/sms.ts';
import { startSmtpPeer } from './peers/smtp.ts';

/*
 * Every channel end to end: an event is published, routed by a rule to a person's channels (or to a chat
 * endpoint), and the dispatcher sends it to a local peer that speaks the real protocol (SMTP, web push with
 * decryption and VAPID, FCM v1 with OAuth, APNs over HTTP/2, Twilio's form API, Slack and Teams webhooks).
 * Workers are driven by hand so each step is deterministic.
 */

interface Setup {
  h: TestHerald;
  source: CreatedSource;
}

async function setup(t: TestContext, engine: Engine): Promise<Setup> {
  const h = await startHerald(t, engine, { workers: false });
  return { h, source: await createSource(h) };
}

async function rule(h: TestHerald, channels: unknown[], users: string[], types = ['po.*']): Promise<void> {
  const res = await h.api('PUT', `/v1/rules/${uniqueId('rule')}`, {
    match: { types },
    recipients: { users },
    channels,
  });
  assert.equal(res.status, 201, res.text);
}

async function provider(h: TestHerald, kind: string, config: unknown, extra: Record<string, unknown> = {}) {
  const id = uniqueId(kind);
  const res = await h.api('PUT', `/v1/providers/${id}`, { kind, config, ...extra });
  assert.equal(res.status, 201, res.text);
  return res.body as { id: string; config: Record<string, unknown> };
}

async function publish(s: Setup, event: Record<string, unknown> = {}): Promise<string> {
  const res = await s.h.app.inject({
    method: 'POST',
    url: '/v1/events',
    headers: { authorization: `Bearer ${s.source.api_key}` },
    payload: {
      type: 'po.approval_requested',
      title: 'PO 4711 needs your approval',
      summary: 'Office chairs, 12 x 310 EUR',
      url: 'https://erp.example.com/po/4711',
      ...event,
    },
  });
  assert.equal(res.statusCode, 202, res.body);
  return JSON.parse(res.body).id as string;
}

/** Routes everything waiting, then lets the dispatcher run until nothing more is due now. */
async function deliver(h: TestHerald): Promise<void> {
  while ((await h.workers.router.runOnce()) > 0);
  while ((await h.workers.dispatcher.runOnce()) > 0);
}

async function deliveriesOf(h: TestHerald, eventId: string) {
  const res = await h.api('GET', `/v1/events/${eventId}`);
  assert.equal(res.status, 200, res.text);
  return res.body.deliveries as { id: string; channel: string; status: string; last_error: string | null }[];
}

for (const engine of ENGINES) {
  test(`[${engine}] email goes out over SMTP with both bodies, the link back and one-click unsubscribe`, async (t) => {
    const s = await setup(t, engine);
    const smtp = await startSmtpPeer(t);
    await provider(s.h, 'smtp', { url: smtp.url, from: 'Herald <herald@example.com>' });
    const user = await createUser(s.h, { email: 'ada@example.com', locale: 'en-GB' });
    await rule(s.h, ['inapp', 'email'], [user.id]);
    const eventId = await publish(s);
    await deliver(s.h);

    const [mail] = await smtp.waitForMessages(1);
    assert.deepEqual(mail!.envelope.to, ['ada@example.com']);
    assert.equal(mail!.parsed.subject, 'PO 4711 needs your approval');
    assert.match(mail!.parsed.text ?? '', /Office chairs/);
    assert.match(mail!.parsed.text ?? '', /https:\/\/erp\.example\.com\/po\/4711/);
    assert.match(String(mail!.parsed.html), /href="https:\/\/erp\.example\.com\/po\/4711"/);
    const lines = mail!.headerLines.map((h) => h.line);
    assert.ok(lines.includes('List-Unsubscribe-Post: List-Unsubscribe=One-Click'), lines.join('\n'));
    const unsubscribe = lines.find((l) => l.startsWith('List-Unsubscribe: '));
    assert.match(
      unsubscribe ?? '',
      /^List-Unsubscribe: <http:\/\/localhost:0\/v1\/unsubscribe\/[\w-]+\.[\w-]+>$/,
    );
    assert.ok(lines.includes('Content-Language: en-GB'));

    const deliveries = await deliveriesOf(s.h, eventId);
    assert.deepEqual(
      deliveries.map((d) => [d.channel, d.status]),
      [['email', 'succeeded']],
    );
    const listed = await s.h.api('GET', `/v1/deliveries/${deliveries[0]!.id}`);
    assert.equal(listed.body.attempts[0].status_code, 250);
    assert.ok(listed.body.attempts[0].provider_id);
  });

  test(`[${engine}] critical email carries no unsubscribe header`, async (t) => {
    const s = await setup(t, engine);
    const smtp = await startSmtpPeer(t);
    await provider(s.h, 'smtp', { url: smtp.url, from: 'herald@example.com' });
    const user = await createUser(s.h, { email: 'ops@example.com' });
    await rule(s.h, ['email'], [user.id]);
    await publish(s, { severity: 'critical' });
    await deliver(s.h);
    const [mail] = await smtp.waitForMessages(1);
    assert.ok(!mail!.headerLines.some((h) => h.key.startsWith('list-unsubscribe')));
  });

  test(`[${engine}] email fails over to the next relay when the first is down, and every try is recorded`, async (t) => {
    const s = await setup(t, engine);
    const down = await startSmtpPeer(t);
    await down.stop();
    const up = await startSmtpPeer(t);
    const first = await provider(s.h, 'smtp', { url: down.url, from: 'herald@example.com' }, { priority: 1 });
    const second = await provider(s.h, 'smtp', { url: up.url, from: 'herald@example.com' }, { priority: 2 });
    const user = await createUser(s.h, { email: 'bob@example.com' });
    await rule(s.h, ['email'], [user.id]);
    const eventId = await publish(s);
    await deliver(s.h);
    await up.waitForMessages(1);
    const [delivery] = await deliveriesOf(s.h, eventId);
    assert.equal(delivery!.status, 'succeeded');
    const attempts = (await s.h.api('GET', `/v1/deliveries/${delivery!.id}`)).body.attempts;
    assert.deepEqual(
      attempts.map((a: { provider_id: string; outcome: string }) => [a.provider_id, a.outcome]),
      [
        [first.id, 'retry'],
        [second.id, 'succeeded'],
      ],
    );
    const failing = (await s.h.api('GET', `/v1/providers/${first.id}`)).body;
    assert.equal(failing.circuit.failures, 1);
    assert.match(failing.last_error, /ECONNREFUSED/);
  });

  test(`[${engine}] a recipient the SMTP server refuses ends dead with the reason`, async (t) => {
    const s = await setup(t, engine);
    const smtp = await startSmtpPeer(t);
    smtp.rejectRecipient('nobody@example.com', 550);
    await provider(s.h, 'smtp', { url: smtp.url, from: 'herald@example.com' });
    const user = await createUser(s.h, { email: 'nobody@example.com' });
    await rule(s.h, ['email'], [user.id]);
    const eventId = await publish(s);
    await deliver(s.h);
    const [delivery] = await deliveriesOf(s.h, eventId);
    assert.equal(delivery!.status, 'dead');
    assert.match(delivery!.last_error ?? '', /550/);
    const dead = await s.h.api('GET', '/v1/deliveries?status=dead&channel=email');
    assert.deepEqual(
      dead.body.items.map((d: { id: string }) => d.id),
      [delivery!.id],
    );
  });

  test(`[${engine}] web push reaches a registered browser, encrypted and VAPID-signed; a gone subscription is removed`, async (t) => {
    const s = await setup(t, engine);
    const push = await startPushService(t);
    const user = await createUser(s.h);
    const token = await userToken(s.h, user.id);
    const key = await s.h.api('GET', '/v1/push/vapid-public-key', undefined, token);
    assert.equal(key.status, 200);
    const subscription = push.subscribe({ applicationServerKey: key.body.public_key });
    const { id: _id, ...browserJson } = subscription;
    const registered = await s.h.api(
      'POST',
      '/v1/me/devices',
      { kind: 'webpush', subscription: browserJson },
      token,
    );
    assert.equal(registered.status, 201, registered.text);
    await rule(s.h, ['inapp', 'push'], [user.id]);

    const eventId = await publish(s, { severity: 'error' });
    await deliver(s.h);
    const [message] = await push.waitForMessages(1);
    const payload = message!.payload as { title: string; event_id: string; url: string };
    assert.equal(payload.title, 'PO 4711 needs your approval');
    assert.equal(payload.event_id, eventId);
    assert.equal(message!.headers['urgency'], 'high');
    assert.ok(message!.topic);

    push.expire(subscription.id, 410);
    await publish(s);
    await deliver(s.h);
    const devices = await s.h.api('GET', '/v1/me/devices', undefined, token);
    assert.deepEqual(devices.body.items, []);
  });

  test(`[${engine}] a push that finds no device falls back to email`, async (t) => {
    const s = await setup(t, engine);
    const smtp = await startSmtpPeer(t);
    await provider(s.h, 'smtp', { url: smtp.url, from: 'herald@example.com' });
    const user = await createUser(s.h, { email: 'carol@example.com' });
    await rule(s.h, ['inapp', { fallback: ['push', 'email'] }], [user.id]);
    const eventId = await publish(s);
    await deliver(s.h);
    await smtp.waitForMessages(1);
    const deliveries = await deliveriesOf(s.h, eventId);
    assert.deepEqual(
      deliveries.map((d) => [d.channel, d.status]),
      [
        ['push', 'dead'],
        ['email', 'succeeded'],
      ],
    );
    assert.match(deliveries[0]!.last_error ?? '', /no push device/);

    const token = await userToken(s.h, user.id);
    const [item] = (await s.h.api('GET', '/v1/me/notifications', undefined, token)).body.items;
    const one = await s.h.api('GET', `/v1/me/notifications/${item.id}`, undefined, token);
    assert.deepEqual(
      one.body.deliveries.map((d: { channel: string; status: string }) => [d.channel, d.status]),
      [
        ['push', 'failed'],
        ['email', 'sent'],
      ],
    );
  });

  test(`[${engine}] FCM and APNs devices get the notification through their providers`, async (t) => {
    const s = await setup(t, engine);
    const fcm = await startFcmPeer(t);
    const apns = await startApnsPeer(t);
    await provider(s.h, 'fcm', { service_account: fcm.serviceAccount, base_url: fcm.url });
    await provider(s.h, 'apns', {
      team_id: apns.teamId,
      key_id: apns.keyId,
      private_key: apns.privateKeyPem,
      topic: apns.topic,
      base_url: apns.url,
    });
    const user = await createUser(s.h);
    const token = await userToken(s.h, user.id);
    const deviceToken = 'a'.repeat(64);
    for (const body of [
      { kind: 'fcm', token: 'fcm-token-1' },
      { kind: 'apns', token: deviceToken },
    ]) {
      const res = await s.h.api('POST', '/v1/me/devices', body, token);
      assert.equal(res.status, 201, res.text);
    }
    await rule(s.h, ['push'], [user.id]);
    await publish(s, { severity: 'critical' });
    await deliver(s.h);
    const [android] = await fcm.waitForMessages(1);
    assert.equal(android!.message['token'], 'fcm-token-1');
    assert.equal(android!.message['notification'].title, 'PO 4711 needs your approval');
    assert.equal(android!.message['android'].priority, 'high');
    const [ios] = await apns.waitForReceived(1);
    assert.equal(ios!.token, deviceToken);
    assert.equal(ios!.headers['apns-priority'], '10');
    assert.equal(ios!.headers['apns-push-type'], 'alert');

    fcm.unregister('fcm-token-1');
    await publish(s);
    await deliver(s.h);
    const devices = await s.h.api('GET', '/v1/me/devices', undefined, token);
    assert.deepEqual(
      devices.body.items.map((d: { kind: string }) => d.kind),
      ['apns'],
    );
  });

  test(`[${engine}] SMS goes through the Twilio-compatible provider, shortened to fit`, async (t) => {
    const s = await setup(t, engine);
    const sms = await startSmsPeer(t);
    await provider(s.h, 'twilio', {
      base_url: sms.baseUrl,
      account_sid: sms.accountSid,
      auth_token: sms.authToken,
      from: sms.from,
      max_segments: 1,
    });
    const user = await createUser(s.h, { phone: '+41791234567' });
    await rule(s.h, ['sms'], [user.id]);
    await publish(s, { summary: 'x'.repeat(400) });
    await deliver(s.h);
    const [message] = await sms.waitFor(1);
    assert.equal(message!.to, '+41791234567');
    assert.equal(message!.numSegments, 1);
    assert.match(message!.body, /^PO 4711 needs your approval/);
  });

  test(`[${engine}] Slack and Teams endpoints receive Block Kit and Adaptive Card messages`, async (t) => {
    const s = await setup(t, engine);
    const chat = await startChatPeer(t);
    for (const [kind, url] of [
      ['slack', chat.slackWebhook()],
      ['teams', chat.teamsWebhook()],
    ] as const) {
      const res = await s.h.api('PUT', `/v1/endpoints/${kind}-ops`, { kind, url, types: ['po.*'] });
      assert.equal(res.status, 201, res.text);
      assert.equal(res.body.kind, kind);
    }
    const eventId = await publish(s);
    await deliver(s.h);
    const records = await chat.waitFor(2);
    const slack = records.find((r) => r.url.startsWith('/services/'))!.json as { blocks: { type: string }[] };
    assert.ok(slack.blocks.some((b) => b.type === 'header'));
    const teams = records.find((r) => !r.url.startsWith('/services/'))!.json as {
      attachments: { contentType: string }[];
    };
    assert.equal(teams.attachments[0]!.contentType, 'application/vnd.microsoft.card.adaptive');
    const deliveries = await deliveriesOf(s.h, eventId);
    assert.deepEqual(deliveries.map((d) => [d.channel, d.status]).sort(), [
      ['slack', 'succeeded'],
      ['teams', 'succeeded'],
    ]);
  });

  test(`[${engine}] provider configuration is checked when saved and secrets are never shown`, async (t) => {
    const s = await setup(t, engine);
    const bad = [
      [
        { kind: 'smtp', config: { url: 'http://mail.example.com', from: 'a@example.com' } },
        'body.config.url',
      ],
      [
        { kind: 'fcm', config: { service_account: { client_email: 'x@y.z', private_key: 'nope' } } },
        'body.config',
      ],
      [
        {
          kind: 'apns',
          config: { team_id: 'ABCDE12345', key_id: 'KEY1234567', private_key: 'x', topic: 'a.b' },
        },
        'body.config.private_key',
      ],
      [{ kind: 'pager', config: {} }, 'body.kind'],
    ] as const;
    for (const [body, field] of bad) {
      const res = await s.h.api('PUT', '/v1/providers/p1', body);
      assert.equal(res.status, 400, res.text);
      assert.ok(
        res.body.errors.some((e: { field: string }) => e.field.startsWith(field)),
        `${field}: ${res.text}`,
      );
    }
    const smtp = await startSmtpPeer(t);
    const url = smtp.urlWithAuth('herald', 's3cret');
    const saved = await s.h.api('PUT', '/v1/providers/relay', {
      kind: 'smtp',
      config: { url, from: 'herald@example.com' },
    });
    assert.equal(saved.status, 201, saved.text);
    assert.doesNotMatch(saved.text, /s3cret/);
    // Sending the redacted form back keeps the stored password.
    const again = await s.h.api('PUT', '/v1/providers/relay', { kind: 'smtp', config: saved.body.config });
    assert.equal(again.status, 200, again.text);
    const stored = await s.h.store.db
      .selectFrom('providers')
      .select('config')
      .where('id', '=', 'relay')
      .executeTakeFirstOrThrow();
    assert.match(stored.config, /s3cret/);
  });
}
