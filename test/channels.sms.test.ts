import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { ChannelConfigError, type Provider } from '../src/channels/channel.ts';
import { type SmsConfig, twilioProvider } from '../src/channels/sms.ts';
import { fitSms, smsEncoding, smsSegments } from '../src/channels/sms-text.ts';
import { createOutboundAgent } from '../src/delivery/ssrf.ts';
import { channelMessage } from './factories.ts';
import { type SmsPeer, startSmsPeer } from './peers/sms.ts';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);
const TO = '+4915112345678';
const SID = `AC${'0123456789abcdef'.repeat(2)}`;
const SERVICE = `MG${'fedcba9876543210'.repeat(2)}`;

const message = channelMessage;

function provider(
  t: TestContext,
  peer: SmsPeer | null,
  config: Record<string, unknown> = {},
  allow = ['127.0.0.1/32'],
): Provider<string> {
  const agent = createOutboundAgent({ allow, connectTimeoutMs: 5000 });
  const validated = twilioProvider.validate({
    base_url: peer?.baseUrl,
    account_sid: peer?.accountSid,
    auth_token: peer?.authToken,
    from: peer?.from,
    ...config,
  });
  const created = twilioProvider.create(validated, { dispatcher: agent, timeoutMs: 10_000, now: () => NOW });
  t.after(async () => {
    await created.close();
    await agent.close();
  });
  return created;
}

const wellFormed = (text: string) =>
  !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);

describe('smsEncoding', () => {
  for (const [text, encoding] of [
    ['', 'GSM-7'],
    ['Hello, world! @£$¥ èéùìò Ç ÄÖÑÜ äöñüà §¿¡ ΔΦΓΛΩΠΨΣΘΞ', 'GSM-7'],
    ['Extension: € { } [ ] ~ | ^ \\ \f', 'GSM-7'],
    ['ç (small c cedilla is not in the alphabet)', 'UCS-2'],
    ['á', 'UCS-2'],
    ['…', 'UCS-2'],
    ['😀', 'UCS-2'],
    ['Привет', 'UCS-2'],
    ['\u001b (escape on its own)', 'UCS-2'],
  ] as const) {
    test(`${JSON.stringify(text).slice(0, 30)} is ${encoding}`, () =>
      assert.equal(smsEncoding(text), encoding));
  }
});

describe('smsSegments', () => {
  const a = (n: number) => 'a'.repeat(n);
  const zh = (n: number) => 'ж'.repeat(n);
  for (const [name, text, segments] of [
    ['empty', '', 1],
    ['GSM-7 160', a(160), 1],
    ['GSM-7 161', a(161), 2],
    ['GSM-7 2 × 153', a(306), 2],
    ['GSM-7 2 × 153 + 1', a(307), 3],
    ['GSM-7 3 × 153', a(459), 3],
    ['extension chars count two septets: 80 €', '€'.repeat(80), 1],
    ['81 €', '€'.repeat(81), 2],
    ['{ at septet 160', `${a(158)}{`, 1],
    ['{ at septet 161', `${a(159)}{`, 2],
    ['an escape sequence is not split between parts', `${a(152)}€${a(152)}`, 3],
    ['UCS-2 70', zh(70), 1],
    ['UCS-2 71', zh(71), 2],
    ['UCS-2 2 × 67', zh(134), 2],
    ['UCS-2 2 × 67 + 1', zh(135), 3],
    ['one emoji turns GSM text into UCS-2', `${a(69)}😀`, 2],
    ['emoji are two code units: 35', '😀'.repeat(35), 1],
    ['emoji 36', '😀'.repeat(36), 2],
    ['a surrogate pair is not split between parts', `${zh(66)}😀${zh(66)}`, 3],
  ] as const) {
    test(`${name} → ${segments}`, () => assert.equal(smsSegments(text), segments));
  }
});

describe('fitSms', () => {
  const url = 'https://erp.example.com/po/4711';

  test('joins title, text and url when they fit', () => {
    assert.equal(fitSms({ title: 'T', text: 'body', url }, 1), `T: body ${url}`);
    assert.equal(fitSms({ title: 'T', text: 'body', url: null }, 1), 'T: body');
    assert.equal(fitSms({ title: '', text: 'body', url }, 1), `body ${url}`);
    assert.equal(fitSms({ title: 'T', text: '', url }, 1), `T ${url}`);
  });

  test('shortens a GSM-7 text with "..." so it stays GSM-7 and keeps the url', () => {
    const out = fitSms({ title: 'Approval needed', text: 'word '.repeat(200), url }, 1);
    assert.equal(smsSegments(out), 1);
    assert.equal(smsEncoding(out), 'GSM-7');
    assert.ok(out.startsWith('Approval needed: word'));
    assert.ok(out.endsWith(`... ${url}`));
    assert.ok(out.length >= 150, 'uses the room there is');
  });

  test('shortens a UCS-2 text with "…"', () => {
    const out = fitSms({ title: 'Störung 🔥', text: 'Пожалуйста, проверьте заказ. '.repeat(20), url }, 2);
    assert.equal(smsSegments(out), 2);
    assert.ok(out.endsWith(`… ${url}`));
  });

  test('never splits a surrogate pair or an emoji sequence', () => {
    const family = '👨‍👩‍👧';
    for (let max = 1; max <= 4; max++) {
      const out = fitSms({ title: 'x', text: `a${family.repeat(100)}`, url }, max);
      assert.ok(wellFormed(out));
      assert.match(out, new RegExp(`^x: a(${family})*… ${url.replaceAll('.', '\\.')}$`));
      assert.ok(smsSegments(out) <= max);
    }
  });

  test('drops the text and then shortens the title before touching the url', () => {
    const out = fitSms({ title: 'T'.repeat(300), text: 'body', url }, 1);
    assert.equal(smsSegments(out), 1);
    assert.ok(out.endsWith(`... ${url}`));
    assert.ok(!out.includes('body'));
  });

  test('cuts the url only when it alone does not fit', () => {
    const long = `https://x.example.com/${'a'.repeat(400)}`;
    const out = fitSms({ title: 'Title', text: 'body', url: long }, 1);
    assert.equal(smsSegments(out), 1);
    assert.ok(out.startsWith('Title: body https://x.example.com/aaa'));
    assert.ok(fitSms({ title: 'Title', text: 'body', url: long }, 3).endsWith(long));
  });

  test('never exceeds maxSegments and keeps the url, over many texts', () => {
    let seed = 7;
    const random = () => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const alphabet = ['a', 'b', ' ', '€', '{', 'é', 'ж', '😀', 'ç', '\n', '…'];
    for (let i = 0; i < 200; i++) {
      const length = Math.floor(random() * 1200);
      const text = Array.from({ length }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
      const max = 1 + Math.floor(random() * 10);
      const out = fitSms({ title: 'Alert', text, url }, max);
      assert.ok(smsSegments(out) <= max, `case ${i}: ${smsSegments(out)} > ${max}`);
      assert.ok(out.endsWith(` ${url}`), `case ${i} keeps the url`);
      assert.ok(wellFormed(out), `case ${i} is well formed`);
    }
  });
});

describe('twilio configuration', () => {
  const valid = { account_sid: SID, auth_token: 'secret-token', from: '+14155550100' };

  test('fills in defaults and trims the base url', () => {
    assert.deepEqual(twilioProvider.validate(valid), {
      base_url: 'https://api.twilio.com',
      account_sid: SID,
      auth_token: 'secret-token',
      from: '+14155550100',
      max_segments: 3,
      status_callback: null,
    });
    const custom = twilioProvider.validate({
      ...valid,
      base_url: 'https://sms.example.com/',
      from: SERVICE,
      max_segments: 10,
      status_callback: 'https://herald.example.com/sms/status',
    });
    assert.equal(custom.base_url, 'https://sms.example.com');
    assert.equal(custom.from, SERVICE);
    assert.equal(custom.max_segments, 10);
  });

  for (const [name, config, path] of [
    ['not an object', 'x', ''],
    ['an array', [], ''],
    ['unknown field', { ...valid, token: 'x' }, '/token'],
    ['base_url not http(s)', { ...valid, base_url: 'ftp://api.twilio.com' }, '/base_url'],
    ['base_url not a URL', { ...valid, base_url: 'api.twilio.com' }, '/base_url'],
    ['account_sid missing', { ...valid, account_sid: undefined }, '/account_sid'],
    ['account_sid malformed', { ...valid, account_sid: 'AC123' }, '/account_sid'],
    ['auth_token empty', { ...valid, auth_token: ' ' }, '/auth_token'],
    ['from not E.164', { ...valid, from: '4155550100' }, '/from'],
    ['from a short MG', { ...valid, from: 'MG123' }, '/from'],
    ['max_segments 0', { ...valid, max_segments: 0 }, '/max_segments'],
    ['max_segments 11', { ...valid, max_segments: 11 }, '/max_segments'],
    ['max_segments fractional', { ...valid, max_segments: 2.5 }, '/max_segments'],
    ['max_segments a string', { ...valid, max_segments: '3' }, '/max_segments'],
    ['status_callback not a URL', { ...valid, status_callback: 'later' }, '/status_callback'],
  ] as const) {
    test(`rejects ${name} at ${path || '(root)'}`, () => {
      assert.throws(
        () => twilioProvider.validate(config),
        (e: unknown) => e instanceof ChannelConfigError && e.path === path && e.message.length > 10,
      );
    });
  }

  test('redact hides the auth token and leaves the config alone', () => {
    const config: SmsConfig = twilioProvider.validate(valid);
    const shown = twilioProvider.redact(config);
    assert.equal(shown['auth_token'], '********');
    assert.equal(shown['account_sid'], SID);
    assert.equal(config.auth_token, 'secret-token');
    assert.equal(JSON.stringify(shown).includes('secret-token'), false);
  });
});

describe('twilio provider against a Twilio-compatible peer', () => {
  test('sends To, From, Body and StatusCallback and returns the message sid', async (t) => {
    const peer = await startSmsPeer(t);
    const callback = 'https://herald.example.com/sms/status';
    const sms = provider(t, peer, { status_callback: callback });
    const result = await sms.send(message(), TO);
    assert.equal(result.outcome, 'succeeded');
    assert.equal(result.statusCode, 201);
    const [record] = await peer.waitFor(1);
    assert.equal(result.providerMessageId, record!.sid);
    assert.match(record!.sid, /^SM[0-9a-f]{32}$/);
    assert.deepEqual(
      {
        to: record!.to,
        from: record!.from,
        service: record!.messagingServiceSid,
        callback: record!.statusCallback,
      },
      { to: TO, from: peer.from, service: null, callback },
    );
    assert.equal(
      record!.body,
      'PO 4711 needs approval: Acme Corp ordered 12 laptops for 14,400 EUR. https://erp.example.com/po/4711',
    );
    assert.equal(JSON.parse(result.response!).status, 'queued');
  });

  test('sends through a messaging service when from is an MG sid', async (t) => {
    const peer = await startSmsPeer(t);
    await provider(t, peer, { from: peer.messagingServiceSid }).send(message(), TO);
    const [record] = await peer.waitFor(1);
    assert.equal(record!.messagingServiceSid, peer.messagingServiceSid);
    assert.equal(record!.from, null);
  });

  test('shortens long texts to max_segments', async (t) => {
    const peer = await startSmsPeer(t);
    const sms = provider(t, peer, { max_segments: 2 });
    const result = await sms.send(message({ text: 'Lorem ipsum dolor sit amet. '.repeat(100) }), TO);
    assert.equal(result.outcome, 'succeeded');
    const [record] = await peer.waitFor(1);
    assert.equal(record!.numSegments, 2);
    assert.ok(record!.body.endsWith(' https://erp.example.com/po/4711'));
  });

  test('numbers that cannot receive are gone: 21211 invalid, 21614 not mobile, 21610 unsubscribed', async (t) => {
    const peer = await startSmsPeer(t);
    const sms = provider(t, peer);
    peer.invalidNumber('+15005550001');
    peer.optedOut('+15005550004');
    const invalid = await sms.send(message(), '+15005550001');
    assert.deepEqual([invalid.outcome, invalid.statusCode, invalid.addressGone], ['failed', 400, true]);
    assert.equal(invalid.error, "21211: The 'To' number +15005550001 is not a valid phone number.");
    const stopped = await sms.send(message(), '+15005550004');
    assert.deepEqual([stopped.outcome, stopped.addressGone], ['failed', true]);
    assert.equal(stopped.error, '21610: Attempt to send to unsubscribed recipient');
    peer.replyNext(400, 21614);
    const landline = await sms.send(message(), TO);
    assert.deepEqual([landline.outcome, landline.addressGone], ['failed', true]);
    assert.match(landline.error!, /^21614: /);
    assert.equal(peer.messages.length, 0);
  });

  test('other 400s fail the message but keep the number', async (t) => {
    const peer = await startSmsPeer(t);
    peer.replyNext(400, 21408);
    const result = await provider(t, peer).send(message(), TO);
    assert.deepEqual([result.outcome, result.addressGone, result.providerFault], ['failed', false, false]);
    assert.match(result.error!, /^21408: Permission to send/);
  });

  test('a wrong auth token is a provider fault, retried', async (t) => {
    const peer = await startSmsPeer(t);
    const result = await provider(t, peer, { auth_token: 'wrong' }).send(message(), TO);
    assert.deepEqual([result.outcome, result.statusCode, result.providerFault], ['retry', 401, true]);
    assert.equal(result.error, '20003: Authenticate');
  });

  test('an unknown account is a provider fault, retried', async (t) => {
    const peer = await startSmsPeer(t);
    const result = await provider(t, peer, { account_sid: SID }).send(message(), TO);
    assert.deepEqual([result.outcome, result.statusCode, result.providerFault], ['retry', 404, true]);
    assert.match(result.error!, /^20404: /);
  });

  test('429 waits for Retry-After, and at least a second without it', async (t) => {
    const peer = await startSmsPeer(t);
    const sms = provider(t, peer);
    peer.replyNext(429, 20429);
    peer.replyNext(429, 20429, { 'retry-after': '5' });
    const bare = await sms.send(message(), TO);
    assert.deepEqual([bare.outcome, bare.retryAfterMs, bare.providerFault], ['retry', 1000, false]);
    assert.equal(bare.error, '20429: Too Many Requests');
    const told = await sms.send(message(), TO);
    assert.equal(told.retryAfterMs, 5000);
  });

  test('5xx is retried as a provider fault', async (t) => {
    const peer = await startSmsPeer(t);
    peer.replyNext(500, 20500);
    const result = await provider(t, peer).send(message(), TO);
    assert.deepEqual([result.outcome, result.statusCode, result.providerFault], ['retry', 500, true]);
    assert.equal(result.error, '20500: Internal Server Error');
  });

  test('an address that is not E.164 fails without a request', async (t) => {
    const peer = await startSmsPeer(t);
    const result = await provider(t, peer).send(message(), '0151 1234567');
    assert.deepEqual([result.outcome, result.addressGone], ['failed', true]);
    assert.equal(peer.requestCount, 0);
  });

  test('an unreachable or refused API is a provider fault, retried', async (t) => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const common = { account_sid: SID, auth_token: 'x', from: '+14155550100' };
    const down = await provider(t, null, { ...common, base_url: `http://127.0.0.1:${port}` }).send(
      message(),
      TO,
    );
    assert.deepEqual([down.outcome, down.statusCode, down.providerFault], ['retry', null, true]);
    assert.match(down.error!, /^network: /);

    const peer = await startSmsPeer(t);
    const refused = await provider(t, peer, {}, []).send(message(), TO);
    assert.deepEqual([refused.outcome, refused.providerFault], ['retry', true]);
    assert.match(refused.error!, /^refused: /);
    assert.equal(peer.requestCount, 0);
  });
});
