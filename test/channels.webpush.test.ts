import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { request } from 'undici';
import webpush from 'web-push';
import { ChannelConfigError, type Message } from '../src/channels/channel.ts';
import {
  generateVapidKeys,
  type PushSubscription,
  validateSubscription,
  type WebPushConfig,
  webPushProvider,
} from '../src/channels/webpush.ts';
import { createOutboundAgent } from '../src/delivery/ssrf.ts';
import { startPushService } from './peers/push-service.ts';

const NOW = Date.parse('2026-03-01T12:00:00Z');
const SUBJECT = 'mailto:ops@example.com';

function buildMessage(overrides: Partial<Message> = {}): Message {
  return {
    id: 'msg_01',
    eventId: 'evt_01',
    notificationId: 'ntf_01',
    type: 'po.approval_requested',
    severity: 'warning',
    title: 'PO 4711 needs your approval',
    text: 'Jane asks you to approve 12 chairs for 1,200 EUR.',
    html: null,
    url: 'https://erp.example.com/po/4711',
    actions: [
      { id: 'approve', label: 'Approve', url: 'https://herald.example.com/a/approve' },
      { id: 'reject', label: 'Reject', url: 'https://herald.example.com/a/reject' },
    ],
    locale: 'en',
    unsubscribeUrl: null,
    expiresAt: null,
    data: { po: '4711' },
    ...overrides,
  };
}

function vapidConfig(): WebPushConfig {
  return webPushProvider.validate({ subject: SUBJECT, ...generateVapidKeys() });
}

/** A provider that may reach 127.0.0.1 (unless `allow` says otherwise), and the push service peer. */
async function setup(t: TestContext, options: { allow?: string[]; config?: WebPushConfig } = {}) {
  const peer = await startPushService(t);
  const agent = createOutboundAgent({ allow: options.allow ?? ['127.0.0.1/32'], connectTimeoutMs: 5000 });
  t.after(() => agent.close());
  const config = options.config ?? vapidConfig();
  const provider = webPushProvider.create(config, { dispatcher: agent, timeoutMs: 10_000, now: () => NOW });
  t.after(() => provider.close());
  return { peer, provider, config };
}

function configError(path: string) {
  return (error: unknown) => {
    assert.ok(error instanceof ChannelConfigError, String(error));
    assert.equal(error.path, path);
    return true;
  };
}

describe('web push provider', () => {
  test('delivers a payload the browser decrypts to the documented JSON, signed with a valid VAPID JWT', async (t) => {
    const { peer, provider, config } = await setup(t);
    const subscription = peer.subscribe({ applicationServerKey: config.public_key });

    const sent = await provider.send(buildMessage(), subscription);

    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    assert.equal(sent.statusCode, 201);
    assert.match(sent.providerMessageId ?? '', new RegExp(`^${peer.origin}/m/`));
    const [received] = await peer.waitForMessages(1);
    assert.deepEqual(received!.payload, {
      id: 'msg_01',
      notification_id: 'ntf_01',
      event_id: 'evt_01',
      title: 'PO 4711 needs your approval',
      body: 'Jane asks you to approve 12 chairs for 1,200 EUR.',
      url: 'https://erp.example.com/po/4711',
      severity: 'warning',
      actions: [
        { action: 'approve', title: 'Approve' },
        { action: 'reject', title: 'Reject' },
      ],
      data: { po: '4711' },
    });
    assert.equal(received!.jwtClaims.aud, peer.origin);
    assert.equal(received!.jwtClaims.sub, SUBJECT);
    assert.equal(received!.headers['content-encoding'], 'aes128gcm');
  });

  test('sets TTL, Urgency and Topic by severity and expiry', async (t) => {
    const { peer, provider } = await setup(t);
    const subscription = peer.subscribe();
    const cases = [
      { severity: 'critical', expiresAt: null, ttl: '86400', urgency: 'high' },
      { severity: 'error', expiresAt: null, ttl: '86400', urgency: 'high' },
      { severity: 'warning', expiresAt: null, ttl: '43200', urgency: 'normal' },
      { severity: 'info', expiresAt: null, ttl: '14400', urgency: 'low' },
      { severity: 'info', expiresAt: NOW + 90_500, ttl: '91', urgency: 'low' },
      { severity: 'info', expiresAt: NOW - 1000, ttl: '0', urgency: 'low' },
    ] as const;
    for (const [i, c] of cases.entries()) {
      const sent = await provider.send(
        buildMessage({ id: `msg_${i}`, severity: c.severity, expiresAt: c.expiresAt }),
        subscription,
      );
      assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    }
    const received = await peer.waitForMessages(cases.length);
    for (const [i, c] of cases.entries()) {
      assert.equal(received[i]!.headers['ttl'], c.ttl, `TTL of case ${i}`);
      assert.equal(received[i]!.headers['urgency'], c.urgency, `Urgency of case ${i}`);
      assert.match(received[i]!.topic ?? '', /^[A-Za-z0-9_-]{32}$/);
    }
    assert.equal(new Set(received.map((m) => m.topic)).size, cases.length, 'one topic per message id');
  });

  test('an updated message carries the same Topic, so it replaces the older one on the device', async (t) => {
    const { peer, provider } = await setup(t);
    const subscription = peer.subscribe();

    await provider.send(buildMessage({ title: 'PO 4711 needs your approval' }), subscription);
    await provider.send(buildMessage({ id: 'msg_other', title: 'Another thing' }), subscription);
    await provider.send(buildMessage({ title: 'PO 4711 was approved by Bob' }), subscription);

    const received = await peer.waitForMessages(3);
    assert.equal(received[0]!.topic, received[2]!.topic);
    assert.notEqual(received[0]!.topic, received[1]!.topic);
    const titles = peer.outstanding(subscription.id).map((m) => (m.payload as { title: string }).title);
    assert.deepEqual(titles, ['Another thing', 'PO 4711 was approved by Bob']);
  });

  test('shortens a long body so the payload fits in one web push record', async (t) => {
    const { peer, provider } = await setup(t);
    const subscription = peer.subscribe();

    const sent = await provider.send(buildMessage({ text: 'ü'.repeat(5000) }), subscription);

    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    const [received] = await peer.waitForMessages(1);
    const payload = received!.payload as { body: string };
    assert.ok(payload.body.endsWith('…'));
    assert.ok(payload.body.length > 1000, 'keeps as much of the body as fits');
    assert.ok(Buffer.byteLength(JSON.stringify(payload)) <= 3993);
  });

  for (const status of [410, 404] as const) {
    test(`a subscription the push service answers ${status} for is reported gone`, async (t) => {
      const { peer, provider } = await setup(t);
      const subscription = peer.subscribe();
      peer.expire(subscription.id, status);

      const sent = await provider.send(buildMessage(), subscription);

      assert.equal(sent.outcome, 'failed');
      assert.equal(sent.statusCode, status);
      assert.equal(sent.addressGone, true);
      assert.equal(sent.providerFault, false);
      assert.match(sent.response ?? '', /Subscription expired/);
    });
  }

  test('429 is retried after the Retry-After the push service asked for', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(429, { 'retry-after': '120' }, '{"code":429,"error":"Too Many Requests"}');

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.retryAfterMs, 120_000);
    assert.equal(sent.addressGone, false);
  });

  test('413 fails the message', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(413, {}, '{"code":413,"error":"Payload Too Large","message":"Data payload too large"}');

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.statusCode, 413);
    assert.match(sent.error ?? '', /Data payload too large/);
  });

  test('400 fails the message and names the push service reason', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(400, {}, '{"code":400,"error":"Bad Request","message":"Invalid Topic header"}');

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'failed');
    assert.match(sent.error ?? '', /Invalid Topic header/);
  });

  test('5xx is retried and counts against the provider', async (t) => {
    const { peer, provider } = await setup(t);
    peer.replyNext(503, { 'retry-after': '30' }, 'maintenance');

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.equal(sent.retryAfterMs, 30_000);
    assert.equal(sent.response, 'maintenance');
  });

  test('a VAPID key the subscription was not created with is refused (403): failed, provider fault', async (t) => {
    const { peer, provider } = await setup(t);
    const subscription = peer.subscribe({ applicationServerKey: generateVapidKeys().public_key });

    const sent = await provider.send(buildMessage(), subscription);

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.statusCode, 403);
    assert.equal(sent.providerFault, true);
    assert.equal(sent.addressGone, false);
    assert.equal(peer.messages.length, 0);
  });

  test('a VAPID JWT signed by another key than the one it names is refused (403)', async (t) => {
    const good = vapidConfig();
    // validate() refuses such a pair; create() is given it directly to see what the push service says.
    const config = { ...good, private_key: generateVapidKeys().private_key };
    const { peer, provider } = await setup(t, { config });

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.statusCode, 403);
    assert.equal(sent.providerFault, true);
    assert.match(sent.error ?? '', /Invalid VAPID token/);
  });

  test('a subscription endpoint on a private address is refused unless allowed', async (t) => {
    const { peer, provider } = await setup(t, { allow: [] });

    const sent = await provider.send(buildMessage(), peer.subscribe());

    assert.equal(sent.outcome, 'failed');
    assert.match(sent.error ?? '', /^refused: 127\.0\.0\.1 is a loopback address/);
    assert.equal(sent.providerFault, false);
    assert.equal(sent.addressGone, false);
    assert.equal(peer.messages.length, 0);
  });

  test('a push service that cannot be reached is retried and counts against the provider', async (t) => {
    const { peer, provider } = await setup(t);
    const closed = createServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const { port } = closed.address() as AddressInfo;
    closed.close();
    await once(closed, 'close');
    const subscription: PushSubscription = {
      ...peer.subscribe(),
      endpoint: `http://127.0.0.1:${port}/push/x`,
    };

    const sent = await provider.send(buildMessage(), subscription);

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.equal(sent.statusCode, null);
    assert.match(sent.error ?? '', /ECONNREFUSED/);
  });
});

describe('web push configuration', () => {
  test('accepts generated keys and hides the private key when shown', () => {
    const keys = generateVapidKeys();
    assert.equal(Buffer.from(keys.public_key, 'base64url').length, 65);
    assert.equal(Buffer.from(keys.private_key, 'base64url').length, 32);

    const config = webPushProvider.validate({ subject: ' https://ops.example.com/contact ', ...keys });

    assert.deepEqual(config, { subject: 'https://ops.example.com/contact', ...keys });
    assert.deepEqual(webPushProvider.redact(config), {
      subject: 'https://ops.example.com/contact',
      public_key: keys.public_key,
      private_key: '********',
    });
    assert.equal(webPushProvider.kind, 'webpush');
    assert.equal(webPushProvider.channel, 'push');
  });

  test('refuses a subject that is not mailto: or https:', () => {
    const keys = generateVapidKeys();
    for (const subject of [
      'ops@example.com',
      'http://ops.example.com',
      'mailto:nobody',
      'https://localhost',
      '',
    ]) {
      assert.throws(() => webPushProvider.validate({ subject, ...keys }), configError('/subject'), subject);
    }
  });

  test('refuses keys that are not a P-256 key pair', () => {
    const keys = generateVapidKeys();
    const point = Buffer.from(keys.public_key, 'base64url');
    const offCurve = Buffer.concat([point.subarray(0, 64), Buffer.from([point[64]! ^ 1])]).toString(
      'base64url',
    );
    const badPublic = [
      point.subarray(0, 64).toString('base64url'),
      offCurve,
      'not base64!',
      Buffer.concat([Buffer.from([0x02]), point.subarray(1, 33)]).toString('base64url'),
    ];
    for (const public_key of badPublic) {
      assert.throws(
        () => webPushProvider.validate({ subject: SUBJECT, public_key, private_key: keys.private_key }),
        configError('/public_key'),
        public_key,
      );
    }
    const shortPrivate = Buffer.from(keys.private_key, 'base64url').subarray(1).toString('base64url');
    const otherPrivate = generateVapidKeys().private_key;
    for (const private_key of [shortPrivate, otherPrivate, undefined]) {
      assert.throws(
        () => webPushProvider.validate({ subject: SUBJECT, public_key: keys.public_key, private_key }),
        configError('/private_key'),
        String(private_key),
      );
    }
  });
});

describe('validateSubscription', () => {
  const keys = () => {
    const { public_key } = generateVapidKeys();
    return { p256dh: public_key, auth: Buffer.alloc(16, 7).toString('base64url') };
  };

  test('accepts what a browser registers and drops the rest', () => {
    const k = keys();
    const subscription = validateSubscription({
      endpoint: 'https://updates.push.services.mozilla.com/wpush/v2/abc',
      expirationTime: null,
      keys: k,
    });
    assert.deepEqual(subscription, {
      endpoint: 'https://updates.push.services.mozilla.com/wpush/v2/abc',
      keys: k,
    });
  });

  test('refuses an endpoint that is not an http(s) URL', () => {
    for (const endpoint of ['ftp://push.example.com/x', 'not a url', '', undefined]) {
      assert.throws(() => validateSubscription({ endpoint, keys: keys() }), configError('/endpoint'));
    }
  });

  test('refuses a p256dh that is not a P-256 point and an auth secret under 16 bytes', () => {
    const endpoint = 'https://fcm.googleapis.com/fcm/send/abc';
    const good = keys();
    const p256dh = Buffer.from(good.p256dh, 'base64url');
    for (const bad of [
      p256dh.subarray(0, 64).toString('base64url'),
      Buffer.alloc(65, 4).toString('base64url'),
    ]) {
      assert.throws(
        () => validateSubscription({ endpoint, keys: { ...good, p256dh: bad } }),
        configError('/keys/p256dh'),
      );
    }
    assert.throws(
      () =>
        validateSubscription({ endpoint, keys: { ...good, auth: Buffer.alloc(8).toString('base64url') } }),
      configError('/keys/auth'),
    );
    assert.throws(() => validateSubscription({ endpoint }), configError('/keys/p256dh'));
  });
});

describe('the stand-in push service', () => {
  interface Tamper {
    headers?: (headers: Record<string, string>) => void;
    body?: (body: Buffer) => Buffer;
  }

  /** POSTs what web-push builds for a fresh subscription, after `tamper`. */
  async function post(t: TestContext, tamper: Tamper = {}) {
    const peer = await startPushService(t);
    const subscription = peer.subscribe();
    const keys = generateVapidKeys();
    const details = webpush.generateRequestDetails(subscription, '{"title":"hi"}', {
      vapidDetails: { subject: SUBJECT, publicKey: keys.public_key, privateKey: keys.private_key },
      TTL: 60,
    });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(details.headers)) headers[name.toLowerCase()] = String(value);
    delete headers['content-length'];
    tamper.headers?.(headers);
    const body = tamper.body?.(details.body) ?? details.body;
    const response = await request(subscription.endpoint, { method: 'POST', headers, body });
    return { status: response.statusCode, text: await response.body.text(), peer };
  }

  test('accepts what web-push builds', async (t) => {
    const { status, peer } = await post(t);
    assert.equal(status, 201);
    assert.deepEqual(peer.messages[0]!.payload, { title: 'hi' });
  });

  test('refuses a push without TTL (400), without VAPID (401), with a forged JWT (403) or tampered (400)', async (t) => {
    assert.equal((await post(t, { headers: (h) => delete h['ttl'] })).status, 400);
    assert.equal((await post(t, { headers: (h) => delete h['authorization'] })).status, 401);
    const otherKey = generateVapidKeys().public_key;
    const forged = await post(t, {
      headers: (h) => {
        h['authorization'] = h['authorization']!.replace(/k=.*/, `k=${otherKey}`);
      },
    });
    assert.equal(forged.status, 403);
    const tampered = await post(t, {
      body: (body) => {
        const copy = Buffer.from(body);
        copy[copy.length - 1]! ^= 1;
        return copy;
      },
    });
    assert.equal(tampered.status, 400);
    assert.match(tampered.text, /cannot be decrypted/);
  });
});
