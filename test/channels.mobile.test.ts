import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, type TestContext, test } from 'node:test';
import { exportPKCS8, generateKeyPair } from 'jose';
import { type ApnsConfig, type ApnsOptions, apnsProvider } from '../src/channels/apns.ts';
import { ChannelConfigError, type Message } from '../src/channels/channel.ts';
import { type FcmConfig, fcmProvider } from '../src/channels/fcm.ts';
import { allowList, createOutboundAgent } from '../src/delivery/ssrf.ts';
import { channelMessage } from './factories.ts';
import { type ApnsPeer, startApnsPeer } from './peers/apns.ts';
import { startFcmPeer } from './peers/fcm.ts';

function message(overrides: Partial<Message> = {}): Message {
  return channelMessage({
    id: `msg_${randomBytes(6).toString('hex')}`,
    eventId: 'evt_4711',
    notificationId: 'ntf_4711',
    text: 'Anna asks you to approve PO 4711 (1,250 EUR).',
    locale: 'en',
    data: { po: '4711' },
    ...overrides,
  });
}

/** A controllable clock starting at the real time. */
function clock(start = Date.now()) {
  let now = start;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

function options(t: TestContext, now: () => number) {
  const dispatcher = createOutboundAgent({ allow: ['127.0.0.1/32'], connectTimeoutMs: 5000 });
  t.after(() => dispatcher.close());
  return { dispatcher, timeoutMs: 5000, now };
}

const fcmToken = () => `c${randomBytes(8).toString('hex')}:APA91b${randomBytes(40).toString('base64url')}`;
const deviceToken = () => randomBytes(32).toString('hex');

function configError(run: () => unknown, path: string, text: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof ChannelConfigError, String(error));
    assert.equal(error.path, path);
    assert.match(error.message, text);
    return true;
  });
}

describe('FCM HTTP v1', () => {
  async function setup(t: TestContext, config: Record<string, unknown> = {}, expiresIn?: number) {
    const peer = await startFcmPeer(t, expiresIn === undefined ? {} : { expiresIn });
    const time = clock();
    const valid = fcmProvider.validate({
      service_account: peer.serviceAccount,
      base_url: peer.url,
      ...config,
    });
    const provider = fcmProvider.create(valid, options(t, time.now));
    t.after(() => provider.close());
    return { peer, provider, time };
  }

  test('sends notification, data, priority, collapse key and TTL; the peer verified the access token', async (t) => {
    const { peer, provider, time } = await setup(t);
    const token = fcmToken();
    const urgent = message({
      severity: 'critical',
      expiresAt: time.now() + 600_000,
      data: { po: '4711', from: 'x' },
    });
    const sent = await provider.send(urgent, token);
    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    assert.equal(sent.statusCode, 200);
    assert.match(sent.providerMessageId ?? '', new RegExp(`^projects/${peer.projectId}/messages/`));
    const [received] = await peer.waitForMessages(1);
    assert.deepEqual(received!.message, {
      token,
      notification: { title: urgent.title, body: urgent.text },
      data: { po: '4711', notification_id: 'ntf_4711', event_id: 'evt_4711', url: urgent.url },
      android: { priority: 'high', collapse_key: urgent.id, ttl: '600s' },
      apns: {
        headers: {
          'apns-priority': '10',
          'apns-collapse-id': urgent.id,
          'apns-expiration': String(Math.floor(urgent.expiresAt! / 1000)),
        },
      },
    });

    const quiet = message({ severity: 'info', notificationId: null, url: null });
    assert.equal((await provider.send(quiet, token)).outcome, 'succeeded');
    assert.equal((await provider.send(quiet, token)).outcome, 'succeeded');
    const [, second, third] = await peer.waitForMessages(3);
    assert.deepEqual(second!.message['data'], { po: '4711', event_id: 'evt_4711' });
    assert.deepEqual(second!.message['android'], { priority: 'normal', collapse_key: quiet.id });
    assert.equal(second!.message['apns'].headers['apns-priority'], '5');
    assert.equal(third!.message['android'].collapse_key, second!.message['android'].collapse_key);
  });

  test('exchanges one access token for many sends, concurrent ones included, until it nears expiry', async (t) => {
    const { peer, provider, time } = await setup(t);
    const token = fcmToken();
    const results = await Promise.all([1, 2, 3, 4, 5].map(() => provider.send(message(), token)));
    assert.deepEqual(
      results.map((r) => r.outcome),
      ['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded'],
    );
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    assert.equal(peer.tokenRequests, 1);
    time.advance(3599_000 - 30_000);
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    assert.equal(peer.tokenRequests, 2);
  });

  test('a 401 drops the access token: retry with providerFault, then a fresh token', async (t) => {
    const { peer, provider } = await setup(t);
    const token = fcmToken();
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    peer.revokeTokens();
    const refused = await provider.send(message(), token);
    assert.equal(refused.outcome, 'retry');
    assert.equal(refused.statusCode, 401);
    assert.equal(refused.providerFault, true);
    assert.match(refused.error ?? '', /^UNAUTHENTICATED: /);
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    assert.equal(peer.tokenRequests, 2);
  });

  test('UNREGISTERED, SENDER_ID_MISMATCH and an invalid token are failed with addressGone', async (t) => {
    const { peer, provider } = await setup(t);
    const token = fcmToken();
    peer.unregister(token);
    const gone = await provider.send(message(), token);
    assert.equal(gone.outcome, 'failed');
    assert.equal(gone.statusCode, 404);
    assert.equal(gone.addressGone, true);
    assert.match(gone.error ?? '', /^UNREGISTERED: /);

    const invalid = await provider.send(message(), 'not a token');
    assert.deepEqual([invalid.outcome, invalid.statusCode, invalid.addressGone], ['failed', 400, true]);
    assert.match(invalid.error ?? '', /^INVALID_ARGUMENT: The registration token/);

    peer.replyNext(403, 'SENDER_ID_MISMATCH');
    const mismatch = await provider.send(message(), fcmToken());
    assert.deepEqual([mismatch.outcome, mismatch.addressGone], ['failed', true]);
  });

  test('INVALID_ARGUMENT about the message is failed but keeps the address', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(400, 'INVALID_ARGUMENT');
    const sent = await provider.send(message(), fcmToken());
    assert.deepEqual(
      [sent.outcome, sent.statusCode, sent.addressGone, sent.providerFault],
      ['failed', 400, false, false],
    );
    assert.match(sent.error ?? '', /^INVALID_ARGUMENT: /);
  });

  test('QUOTA_EXCEEDED is retried after Retry-After, and never sooner than a minute', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(429, 'QUOTA_EXCEEDED');
    peer.replyNext(429, 'QUOTA_EXCEEDED', { 'retry-after': '10' });
    peer.replyNext(429, 'QUOTA_EXCEEDED', { 'retry-after': '120' });
    const retries = [];
    for (let i = 0; i < 3; i++) retries.push(await provider.send(message(), fcmToken()));
    assert.deepEqual(
      retries.map((r) => [r.outcome, r.statusCode, r.retryAfterMs]),
      [
        ['retry', 429, 60_000],
        ['retry', 429, 60_000],
        ['retry', 429, 120_000],
      ],
    );
    assert.match(retries[0]!.error ?? '', /^QUOTA_EXCEEDED: /);
  });

  test('UNAVAILABLE and INTERNAL are retried as provider faults, honouring Retry-After', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(503, 'UNAVAILABLE', { 'retry-after': '30' });
    peer.replyNext(500, 'INTERNAL');
    const unavailable = await provider.send(message(), fcmToken());
    assert.deepEqual(
      [unavailable.outcome, unavailable.statusCode, unavailable.providerFault, unavailable.retryAfterMs],
      ['retry', 503, true, 30_000],
    );
    assert.match(unavailable.error ?? '', /^UNAVAILABLE: /);
    const internal = await provider.send(message(), fcmToken());
    assert.deepEqual(
      [internal.outcome, internal.providerFault, internal.retryAfterMs],
      ['retry', true, null],
    );
  });

  test('a token exchange the endpoint refuses is a provider fault', async (t) => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true });
    const peer = await startFcmPeer(t);
    const account = { ...peer.serviceAccount, private_key: await exportPKCS8(privateKey) };
    const config = fcmProvider.validate({ service_account: account, base_url: peer.url });
    const provider = fcmProvider.create(config, options(t, Date.now));
    const sent = await provider.send(message(), fcmToken());
    assert.deepEqual([sent.outcome, sent.statusCode, sent.providerFault], ['retry', 400, true]);
    assert.match(sent.error ?? '', /^invalid_grant: /);
    assert.equal(peer.messages.length, 0);
  });

  test('an unknown project is a provider fault', async (t) => {
    const { provider } = await setup(t, { project_id: 'someone-else' });
    const sent = await provider.send(message(), fcmToken());
    assert.deepEqual([sent.outcome, sent.statusCode, sent.providerFault], ['retry', 404, true]);
    assert.match(sent.error ?? '', /^NOT_FOUND: /);
  });

  test('validates the configuration with paths, and redacts the private key', async (t) => {
    const peer = await startFcmPeer(t);
    const { project_id: _, ...withoutProject } = peer.serviceAccount;
    configError(
      () => fcmProvider.validate({ service_account: withoutProject }),
      '/project_id',
      /missing FCM project/,
    );
    configError(
      () => fcmProvider.validate({ service_account: { ...peer.serviceAccount, private_key: 'not a key' } }),
      '/service_account/private_key',
      /PKCS#8/,
    );
    const ecKey = await exportPKCS8((await generateKeyPair('ES256', { extractable: true })).privateKey);
    configError(
      () => fcmProvider.validate({ service_account: { ...peer.serviceAccount, private_key: ecKey } }),
      '/service_account/private_key',
      /RSA/,
    );
    configError(() => fcmProvider.validate({}), '/service_account', /object/);
    configError(
      () => fcmProvider.validate({ service_account: { ...peer.serviceAccount, client_email: undefined } }),
      '/service_account/client_email',
      /client_email/,
    );

    const config: FcmConfig = fcmProvider.validate({ service_account: withoutProject, project_id: 'my-app' });
    assert.equal(config.project_id, 'my-app');
    assert.equal(config.base_url, 'https://fcm.googleapis.com');
    assert.equal(config.service_account.token_uri, peer.serviceAccount.token_uri);
    assert.equal('private_key_id' in config.service_account, false);
    const shown = fcmProvider.redact(config);
    assert.equal((shown['service_account'] as Record<string, unknown>)['private_key'], '********');
    assert.doesNotMatch(JSON.stringify(shown), /PRIVATE KEY/);
  });
});

describe('APNs over HTTP/2', () => {
  function apnsConfig(peer: ApnsPeer, overrides: Record<string, unknown> = {}): ApnsConfig {
    return apnsProvider.validate({
      team_id: peer.teamId,
      key_id: peer.keyId,
      private_key: peer.privateKeyPem,
      topic: peer.topic,
      base_url: peer.url,
      ...overrides,
    });
  }

  async function setup(t: TestContext, start?: number, extra: Partial<ApnsOptions> = {}) {
    const peer = await startApnsPeer(t);
    const time = clock(start);
    const provider = apnsProvider.create(apnsConfig(peer), { ...options(t, time.now), ...extra });
    t.after(() => provider.close());
    return { peer, provider, time };
  }

  test('sends headers and payload by severity over one connection with one provider token', async (t) => {
    const { peer, provider, time } = await setup(t);
    const token = deviceToken();
    const critical = message({ severity: 'critical', expiresAt: time.now() + 3600_000 });
    const sent = await provider.send(critical, token);
    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    assert.equal(sent.statusCode, 200);
    assert.match(sent.providerMessageId ?? '', /^[0-9a-f-]{36}$/);
    const quiet = message({ severity: 'info', id: `msg_${'x'.repeat(80)}`, notificationId: null, url: null });
    assert.equal((await provider.send(quiet, token)).outcome, 'succeeded');
    assert.equal((await provider.send(quiet, token)).outcome, 'succeeded');

    const [first, second, third] = await peer.waitForReceived(3);
    assert.equal(first!.token, token);
    assert.equal(first!.headers['apns-topic'], peer.topic);
    assert.equal(first!.headers['apns-push-type'], 'alert');
    assert.equal(first!.headers['apns-priority'], '10');
    assert.equal(first!.headers['apns-collapse-id'], critical.id);
    assert.equal(first!.headers['apns-expiration'], String(Math.floor(critical.expiresAt! / 1000)));
    assert.deepEqual(first!.payload, {
      aps: {
        alert: { title: critical.title, body: critical.text },
        'thread-id': 'po.approval_requested',
        sound: 'default',
      },
      po: '4711',
      notification_id: 'ntf_4711',
      event_id: 'evt_4711',
      url: critical.url,
    });
    assert.equal(second!.headers['apns-priority'], '5');
    assert.equal(second!.headers['apns-expiration'], undefined);
    assert.deepEqual(second!.payload['aps'], {
      alert: { title: quiet.title, body: quiet.text },
      'thread-id': quiet.type,
    });
    const collapse = String(second!.headers['apns-collapse-id']);
    assert.ok(Buffer.byteLength(collapse) <= 64);
    assert.equal(third!.headers['apns-collapse-id'], collapse);
    assert.equal(peer.sessions, 1);
    assert.equal(new Set([first, second, third].map((r) => r!.headers.authorization)).size, 1);
  });

  test('warning and error notifications go out at priority 10', async (t) => {
    const { peer, provider } = await setup(t);
    for (const severity of ['warning', 'error'] as const) {
      assert.equal((await provider.send(message({ severity }), deviceToken())).outcome, 'succeeded');
    }
    const received = await peer.waitForReceived(2);
    assert.deepEqual(
      received.map((r) => r.headers['apns-priority']),
      ['10', '10'],
    );
  });

  test('reuses the provider token for 50 minutes, then signs a new one', async (t) => {
    // The clock starts 55 minutes back so that the peer, on the real clock, still accepts the first token.
    const { peer, provider, time } = await setup(t, Date.now() - 55 * 60_000);
    const token = deviceToken();
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    time.advance(30 * 60_000);
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    time.advance(21 * 60_000);
    assert.equal((await provider.send(message(), token)).outcome, 'succeeded');
    const [a, b, c] = (await peer.waitForReceived(3)).map((r) => r.headers.authorization);
    assert.equal(a, b);
    assert.notEqual(b, c);
  });

  test('ExpiredProviderToken and InvalidProviderToken are provider faults and drop the token', async (t) => {
    const stale = await setup(t, Date.now() - 2 * 3600_000);
    const expired = await stale.provider.send(message(), deviceToken());
    assert.deepEqual(
      [expired.outcome, expired.statusCode, expired.providerFault, expired.error],
      ['retry', 403, true, 'ExpiredProviderToken'],
    );

    const { peer, provider, time } = await setup(t);
    assert.equal((await provider.send(message(), deviceToken())).outcome, 'succeeded');
    peer.replyNext(403, 'InvalidProviderToken');
    const invalid = await provider.send(message(), deviceToken());
    assert.deepEqual(
      [invalid.outcome, invalid.providerFault, invalid.error],
      ['retry', true, 'InvalidProviderToken'],
    );
    time.advance(1000);
    assert.equal((await provider.send(message(), deviceToken())).outcome, 'succeeded');
    const [before, after] = (await peer.waitForReceived(2)).map((r) => r.headers.authorization);
    assert.notEqual(before, after);
  });

  test('Unregistered, BadDeviceToken and a malformed token are failed with addressGone', async (t) => {
    const { peer, provider } = await setup(t);
    const token = deviceToken();
    peer.unregister(token);
    const gone = await provider.send(message(), token);
    assert.deepEqual(
      [gone.outcome, gone.statusCode, gone.addressGone, gone.error],
      ['failed', 410, true, 'Unregistered'],
    );
    assert.match(gone.response ?? '', /"timestamp":\d+/);

    const bad = await provider.send(message(), randomBytes(33).toString('hex'));
    assert.deepEqual(
      [bad.outcome, bad.statusCode, bad.addressGone, bad.error],
      ['failed', 400, true, 'BadDeviceToken'],
    );

    const malformed = await provider.send(message(), '../../admin');
    assert.deepEqual(
      [malformed.outcome, malformed.statusCode, malformed.addressGone],
      ['failed', null, true],
    );
    assert.match(malformed.error ?? '', /^BadDeviceToken/);
  });

  test('TooManyRequests is retried; ServiceUnavailable is a provider fault; PayloadTooLarge is failed', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(429, 'TooManyRequests');
    peer.replyNext(503, 'ServiceUnavailable');
    peer.replyNext(500, 'InternalServerError');
    peer.replyNext(413, 'PayloadTooLarge');
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push(await provider.send(message(), deviceToken()));
    assert.deepEqual(
      answers.map((r) => [r.outcome, r.statusCode, r.providerFault, r.addressGone, r.error]),
      [
        ['retry', 429, false, false, 'TooManyRequests'],
        ['retry', 503, true, false, 'ServiceUnavailable'],
        ['retry', 500, true, false, 'InternalServerError'],
        ['failed', 413, false, false, 'PayloadTooLarge'],
      ],
    );
  });

  test('a topic APNs does not accept is failed (BadTopic)', async (t) => {
    const peer = await startApnsPeer(t);
    const provider = apnsProvider.create(
      apnsConfig(peer, { topic: 'com.example.other' }),
      options(t, Date.now),
    );
    t.after(() => provider.close());
    const sent = await provider.send(message(), deviceToken());
    assert.deepEqual(
      [sent.outcome, sent.statusCode, sent.addressGone, sent.error],
      ['failed', 400, false, 'BadTopic'],
    );
  });

  test('opens a new connection after the peer sends GOAWAY', async (t) => {
    const { peer, provider } = await setup(t);
    assert.equal((await provider.send(message(), deviceToken())).outcome, 'succeeded');
    peer.goaway();
    const sent = await provider.send(message(), deviceToken());
    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    assert.equal(peer.sessions, 2);
  });

  test('refuses to connect to an address outside the allow list', async (t) => {
    const refused = await setup(t, undefined, { allow: allowList([]) });
    const sent = await refused.provider.send(message(), deviceToken());
    assert.deepEqual([sent.outcome, sent.providerFault, sent.statusCode], ['retry', true, null]);
    assert.match(sent.error ?? '', /^refused: 127\.0\.0\.1 is a loopback address/);
    assert.equal(refused.peer.sessions, 0);

    const allowed = await setup(t, undefined, { allow: allowList(['127.0.0.1/32']) });
    assert.equal((await allowed.provider.send(message(), deviceToken())).outcome, 'succeeded');
  });

  test('an unreachable APNs is a provider fault', async (t) => {
    const peer = await startApnsPeer(t);
    const config = apnsConfig(peer);
    await peer.close();
    const provider = apnsProvider.create(config, options(t, Date.now));
    t.after(() => provider.close());
    const sent = await provider.send(message(), deviceToken());
    assert.deepEqual([sent.outcome, sent.providerFault, sent.statusCode], ['retry', true, null]);
    assert.match(sent.error ?? '', /ECONNREFUSED/);
  });

  test('validates the configuration with paths, and redacts the private key', async (t) => {
    const peer = await startApnsPeer(t);
    configError(() => apnsConfig(peer, { team_id: 'TEAM' }), '/team_id', /Team ID/);
    configError(() => apnsConfig(peer, { key_id: 'abc-def-12' }), '/key_id', /10 capital letters/);
    configError(() => apnsConfig(peer, { private_key: 'not a key' }), '/private_key', /PKCS#8/);
    const broken = peer.privateKeyPem.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!');
    configError(() => apnsConfig(peer, { private_key: broken }), '/private_key', /cannot be read/);
    const rsa = await exportPKCS8((await generateKeyPair('RS256', { extractable: true })).privateKey);
    configError(() => apnsConfig(peer, { private_key: rsa }), '/private_key', /EC P-256/);
    configError(() => apnsConfig(peer, { topic: '' }), '/topic', /bundle id/);
    configError(() => apnsConfig(peer, { base_url: 'ftp://apple' }), '/base_url', /origin/);

    const config = apnsProvider.validate({
      team_id: peer.teamId,
      key_id: peer.keyId,
      private_key: peer.privateKeyPem,
      topic: peer.topic,
    });
    assert.equal(config.base_url, 'https://api.push.apple.com');
    const shown = apnsProvider.redact(config);
    assert.equal(shown['private_key'], '********');
    assert.equal(shown['team_id'], peer.teamId);
  });
});
