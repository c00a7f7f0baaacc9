import assert from 'node:assert/strict';
import { type BlockList, createServer, type Socket } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { Agent } from 'undici';
import { ChannelConfigError, type Message, type Provider } from '../src/channels/channel.ts';
import { type SmtpConfig, smtpProvider } from '../src/channels/email.ts';
import { allowList } from '../src/delivery/ssrf.ts';
import { type ReceivedMail, startSmtpPeer } from './peers/smtp.ts';

function buildMessage(overrides: Partial<Message> = {}): Message {
  return {
    id: 'msg_01J9ZQ4K7V',
    eventId: 'evt_01J9ZQ4K7V',
    notificationId: 'ntf_1',
    type: 'po.approval_requested',
    severity: 'warning',
    title: 'Approve purchase order PO-1042',
    text: 'Ann asks you to approve PO-1042 (3 laptops, 4 200 EUR).\n\nIt is due on Friday.',
    html: null,
    url: 'https://erp.example.com/po/1042',
    actions: [
      { id: 'approve', label: 'Approve', url: 'https://herald.example.com/a/approve?sig=abc&x=1' },
      { id: 'reject', label: 'Reject', url: 'https://herald.example.com/a/reject?sig=def' },
      { id: 'comment', label: 'Comment', url: null },
    ],
    locale: 'de-CH',
    unsubscribeUrl: 'https://herald.example.com/unsubscribe/tok_123',
    expiresAt: null,
    data: {},
    ...overrides,
  };
}

function createProvider(
  t: TestContext,
  config: Partial<SmtpConfig> & { url: string },
  timeoutMs = 10_000,
  allow?: BlockList,
) {
  const dispatcher = new Agent();
  const provider: Provider<string> = smtpProvider.create(
    smtpProvider.validate({ from: 'Herald <herald@example.com>', ...config }),
    { dispatcher, timeoutMs, now: Date.now, ...(allow === undefined ? {} : { allow }) },
  );
  t.after(async () => {
    await provider.close();
    await dispatcher.close();
  });
  return provider;
}

function rawHeader(mail: ReceivedMail, name: string): string[] {
  return mail.headerLines.filter((h) => h.key === name.toLowerCase()).map((h) => h.line);
}

describe('smtp provider: what the recipient gets', () => {
  test('a message arrives with sender, recipient, subject, both bodies and the Herald headers', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url, reply_to: 'ops@example.com' });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    assert.equal(sent.statusCode, 250);
    assert.match(sent.response ?? '', /^250 /);
    const [mail] = await peer.waitForMessages(1);
    assert.ok(mail);
    assert.deepEqual(mail.envelope, { from: 'herald@example.com', to: ['ann@example.org'] });
    assert.deepEqual(mail.parsed.from?.value, [{ name: 'Herald', address: 'herald@example.com' }]);
    assert.equal(
      mail.parsed.to && !Array.isArray(mail.parsed.to) ? mail.parsed.to.text : null,
      'ann@example.org',
    );
    assert.equal(mail.parsed.replyTo?.text, 'ops@example.com');
    assert.equal(mail.parsed.subject, 'Approve purchase order PO-1042');
    assert.equal(mail.parsed.messageId, sent.providerMessageId);
    assert.equal(mail.parsed.messageId, '<msg_01J9ZQ4K7V.herald@example.com>');
    assert.deepEqual(rawHeader(mail, 'X-Herald-Message-ID'), ['X-Herald-Message-ID: msg_01J9ZQ4K7V']);
    assert.deepEqual(rawHeader(mail, 'X-Herald-Event-ID'), ['X-Herald-Event-ID: evt_01J9ZQ4K7V']);
    assert.deepEqual(rawHeader(mail, 'Content-Language'), ['Content-Language: de-CH']);
    assert.deepEqual(rawHeader(mail, 'Auto-Submitted'), ['Auto-Submitted: auto-generated']);
  });

  test('the text body carries the link back and every action that has a link', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });

    await provider.send(buildMessage(), 'ann@example.org');

    const [mail] = await peer.waitForMessages(1);
    const text = mail?.parsed.text ?? '';
    assert.ok(
      text.startsWith('Ann asks you to approve PO-1042 (3 laptops, 4 200 EUR).\n\nIt is due on Friday.'),
    );
    assert.match(text, /^Open: https:\/\/erp\.example\.com\/po\/1042$/m);
    assert.match(text, /^Approve: https:\/\/herald\.example\.com\/a\/approve\?sig=abc&x=1$/m);
    assert.match(text, /^Reject: https:\/\/herald\.example\.com\/a\/reject\?sig=def$/m);
    assert.doesNotMatch(text, /Comment/);
  });

  test('without an HTML body an escaped one is made from the text, with the links', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });

    await provider.send(
      buildMessage({ title: 'PO <1042> & co', text: 'Line <b>one</b>\nline two' }),
      'ann@example.org',
    );

    const [mail] = await peer.waitForMessages(1);
    const html = String(mail?.parsed.html);
    assert.match(html, /<html lang="de-CH">/);
    assert.match(html, /<title>PO &#60;1042&#62; &#38; co<\/title>/);
    assert.match(html, /<p>Line &#60;b&#62;one&#60;\/b&#62;<br>line two<\/p>/);
    assert.match(html, /<a href="https:\/\/erp\.example\.com\/po\/1042">Open<\/a>/);
    assert.match(html, /<a href="https:\/\/herald\.example\.com\/a\/approve\?sig=abc&#38;x=1">Approve<\/a>/);
    assert.match(html, /<a href="https:\/\/herald\.example\.com\/a\/reject\?sig=def">Reject<\/a>/);
  });

  test('a rendered HTML body is kept, and only the links it lacks are added before </body>', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    const html =
      '<html><body><h1>PO-1042</h1><a href="https://erp.example.com/po/1042">See the order</a>' +
      '<a href="https://herald.example.com/a/approve?sig=abc&amp;x=1">Approve</a></body></html>';

    await provider.send(
      buildMessage({ html, text: 'See https://erp.example.com/po/1042' }),
      'ann@example.org',
    );

    const [mail] = await peer.waitForMessages(1);
    const received = String(mail?.parsed.html);
    assert.ok(received.startsWith('<html><body><h1>PO-1042</h1><a href="https://erp.example.com/po/1042">'));
    assert.equal(received.split('https://erp.example.com/po/1042').length, 2, 'link back not repeated');
    assert.equal(received.split('/a/approve').length, 2, 'action already linked not repeated');
    assert.match(received, /Approve<\/a><p><a [^>]+>Reject<\/a><\/p>\n<\/body><\/html>$/);
    assert.doesNotMatch(mail?.parsed.text ?? '', /^Open:/m);
  });

  test('List-Unsubscribe and List-Unsubscribe-Post (RFC 8058) are sent as exact single lines', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    const long = `https://herald.example.com/unsubscribe/${'t'.repeat(120)}?list=po.approval_requested`;

    await provider.send(buildMessage({ unsubscribeUrl: long }), 'ann@example.org');

    const [mail] = await peer.waitForMessages(1);
    assert.ok(mail);
    assert.deepEqual(rawHeader(mail, 'List-Unsubscribe'), [`List-Unsubscribe: <${long}>`]);
    assert.deepEqual(rawHeader(mail, 'List-Unsubscribe-Post'), [
      'List-Unsubscribe-Post: List-Unsubscribe=One-Click',
    ]);
    assert.ok(mail.raw.includes(`\r\nList-Unsubscribe: <${long}>\r\n`), 'not folded');
  });

  test('a message without an unsubscribe link (critical) has neither list header, nor a language when unknown', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });

    await provider.send(
      buildMessage({ severity: 'critical', unsubscribeUrl: null, locale: null }),
      'ann@example.org',
    );

    const [mail] = await peer.waitForMessages(1);
    assert.ok(mail);
    assert.deepEqual(rawHeader(mail, 'List-Unsubscribe'), []);
    assert.deepEqual(rawHeader(mail, 'List-Unsubscribe-Post'), []);
    assert.deepEqual(rawHeader(mail, 'Content-Language'), []);
  });

  test('messages sent at once all arrive over the pool', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });

    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        provider.send(buildMessage({ id: `msg_${i}` }), `user${i}@example.org`),
      ),
    );

    assert.deepEqual(new Set(results.map((r) => r.outcome)), new Set(['succeeded']));
    const mails = await peer.waitForMessages(12);
    assert.equal(new Set(mails.map((m) => m.envelope.to[0])).size, 12);
  });
});

describe('smtp provider: how answers are classified', () => {
  test('a recipient rejected with 550 fails and the address is gone', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.rejectRecipient('gone@example.org', 550);

    const sent = await provider.send(buildMessage(), 'gone@example.org');

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.addressGone, true);
    assert.equal(sent.providerFault, false);
    assert.equal(sent.statusCode, 550);
    assert.match(sent.error ?? '', /^EENVELOPE: .*550 5\.1\.1 Mailbox unavailable/);
    assert.equal(sent.response, '550 5.1.1 Mailbox unavailable');
    assert.equal(peer.messages.length, 0);
  });

  test('a recipient refused by policy (550 5.7.1) fails but the address is kept', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.rejectRecipient('ann@example.org', 550, { message: '5.7.1 Message rejected as spam' });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.addressGone, false);
  });

  test('a message refused at DATA with 552 fails, the address stays', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.failNext(552);

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.statusCode, 552);
    assert.equal(sent.addressGone, false);
    assert.equal(sent.providerFault, false);
  });

  test('451 is retried, and the next attempt goes through', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.rejectRecipient('ann@example.org', 451, { times: 1 });

    const first = await provider.send(buildMessage(), 'ann@example.org');
    const second = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(first.outcome, 'retry');
    assert.equal(first.statusCode, 451);
    assert.equal(first.providerFault, false);
    assert.equal(first.addressGone, false);
    assert.equal(second.outcome, 'succeeded');
    assert.equal((await peer.waitForMessages(1)).length, 1);
  });

  test('451 at the end of DATA is retried', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.failNext(451);

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.statusCode, 451);
    assert.match(sent.error ?? '', /451/);
  });

  test('421 (service not available) is retried as the provider’s fault', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    peer.failNext(421);

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.statusCode, 421);
    assert.equal(sent.providerFault, true);
  });

  test('a refused connection is retried as the provider’s fault', async (t) => {
    const peer = await startSmtpPeer(t);
    await peer.stop();
    const provider = createProvider(t, { url: peer.url });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.equal(sent.statusCode, null);
    assert.match(sent.error ?? '', /^ECONNREFUSED: /);
  });

  test('the relay is reached through the SSRF guard: a loopback relay only when allowed, by address or by name', async (t) => {
    const peer = await startSmtpPeer(t);
    const byName = peer.url.replace('127.0.0.1', 'localhost');
    for (const url of [peer.url, byName]) {
      const refused = await createProvider(t, { url }, 10_000, allowList([])).send(
        buildMessage(),
        'a@example.org',
      );
      assert.equal(refused.outcome, 'retry', url);
      assert.equal(refused.providerFault, true);
      assert.match(refused.error ?? '', /loopback/);
    }
    assert.equal(peer.messages.length, 0);
    const allowed = createProvider(t, { url: byName }, 10_000, allowList(['127.0.0.0/8', '::1/128']));
    assert.equal((await allowed.send(buildMessage(), 'a@example.org')).outcome, 'succeeded');
    assert.equal((await peer.waitForMessages(1)).length, 1);
  });

  test('a relay that goes down between messages: the next send is retried as the provider’s fault', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    assert.equal((await provider.send(buildMessage(), 'ann@example.org')).outcome, 'succeeded');

    await peer.stop();
    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
  });

  test('a relay that never greets is retried once the timeout passes', async (t) => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const socket of sockets) socket.destroy();
      silent.close();
    });
    const address = silent.address();
    assert.ok(address !== null && typeof address === 'object');
    const provider = createProvider(t, { url: `smtp://127.0.0.1:${address.port}` }, 300);

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.match(sent.error ?? '', /^ETIMEDOUT/);
  });

  test('an address that is not an email address fails without connecting', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });

    const sent = await provider.send(buildMessage(), 'ann at example.org');

    assert.equal(sent.outcome, 'failed');
    assert.equal(sent.addressGone, true);
    assert.equal(peer.messages.length, 0);
  });

  test('a closed provider does not send', async (t) => {
    const peer = await startSmtpPeer(t);
    const provider = createProvider(t, { url: peer.url });
    await provider.close();

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(peer.messages.length, 0);
  });
});

describe('smtp provider: authentication', () => {
  const auth = { user: 'herald', pass: 'p@ss:w/rd' };

  test('the right credentials are accepted', async (t) => {
    const peer = await startSmtpPeer(t, { auth });
    const provider = createProvider(t, { url: peer.urlWithAuth(auth.user, auth.pass) });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'succeeded', sent.error ?? '');
    const [mail] = await peer.waitForMessages(1);
    assert.equal(mail?.user, 'herald');
  });

  test('wrong credentials are retried as the provider’s fault and say so', async (t) => {
    const peer = await startSmtpPeer(t, { auth });
    const provider = createProvider(t, { url: peer.urlWithAuth(auth.user, 'wrong') });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.equal(sent.statusCode, 535);
    assert.match(sent.error ?? '', /^EAUTH: .*login/i);
    assert.equal(peer.messages.length, 0);
  });

  test('no credentials where the relay requires them is the provider’s fault', async (t) => {
    const peer = await startSmtpPeer(t, { auth });
    const provider = createProvider(t, { url: peer.url });

    const sent = await provider.send(buildMessage(), 'ann@example.org');

    assert.equal(sent.outcome, 'retry');
    assert.equal(sent.providerFault, true);
    assert.equal(sent.addressGone, false);
  });
});

describe('smtp provider: configuration', () => {
  function refusal(config: unknown): ChannelConfigError {
    try {
      smtpProvider.validate(config);
    } catch (error) {
      assert.ok(error instanceof ChannelConfigError);
      return error;
    }
    assert.fail(`accepted ${JSON.stringify(config)}`);
  }

  test('accepts smtp and smtps URLs, with or without credentials, port and known options', () => {
    for (const url of [
      'smtp://relay.example.com',
      'smtp://user:secret@relay.example.com:587',
      'smtps://user%40example.com:s%3Acret@smtp.example.com:465',
      'smtp://127.0.0.1:2525?ignoreTLS=true',
      'smtp://relay.example.com:25?requireTLS=true&tls.servername=mx.example.com&maxConnections=2',
    ]) {
      assert.deepEqual(smtpProvider.validate({ url, from: 'herald@example.com' }), {
        url,
        from: 'herald@example.com',
      });
    }
    assert.deepEqual(
      smtpProvider.validate({
        url: ' smtp://relay.example.com ',
        from: ' "Herald, Ops" <herald@example.com> ',
        reply_to: 'ops@example.com',
      }),
      {
        url: 'smtp://relay.example.com',
        from: '"Herald, Ops" <herald@example.com>',
        reply_to: 'ops@example.com',
      },
    );
  });

  test('refuses a bad URL, pointing at /url', () => {
    const from = 'herald@example.com';
    for (const [url, message] of [
      ['https://relay.example.com', /scheme must be smtp: or smtps:/],
      ['smtp:///nohost', /has no host/],
      ['smtp://relay.example.com:0', /port/],
      ['smtp://relay.example.com:70000', /port 1-65535/],
      ['not a url', /must be a URL/],
      ['smtp://relay.example.com?ignoreTSL=true', /unknown option ignoreTSL/],
      ['smtp://relay.example.com?ignoreTLS=yes', /ignoreTLS must be true or false/],
      ['smtp://relay.example.com?maxConnections=0', /maxConnections must be a positive whole number/],
      ['smtp://user:50%zz@relay.example.com', /malformed/],
      [42, /must be a URL/],
    ] as const) {
      const error = refusal({ url, from });
      assert.equal(error.path, '/url', String(url));
      assert.match(error.message, message);
    }
  });

  test('refuses a sender that is not one email address, pointing at /from or /reply_to', () => {
    const url = 'smtp://relay.example.com';
    for (const from of ['herald', 'Herald <herald>', 'a@example.com, b@example.com', '', 7, undefined]) {
      assert.equal(refusal({ url, from }).path, '/from', String(from));
    }
    assert.equal(refusal({ url, from: 'herald@example.com', reply_to: 'nobody' }).path, '/reply_to');
  });

  test('refuses something other than an object and unknown fields', () => {
    assert.equal(refusal('smtp://relay.example.com').path, '');
    assert.equal(refusal(null).path, '');
    assert.equal(
      refusal({ url: 'smtp://relay.example.com', from: 'herald@example.com', password: 'x' }).path,
      '/password',
    );
  });

  test('redact hides the password and keeps the rest', () => {
    const config = smtpProvider.validate({
      url: 'smtp://herald:s3cr%3At@relay.example.com:587?requireTLS=true',
      from: 'herald@example.com',
    });

    const shown = smtpProvider.redact(config);

    assert.deepEqual(shown, {
      url: 'smtp://herald:********@relay.example.com:587?requireTLS=true',
      from: 'herald@example.com',
    });
    assert.doesNotMatch(JSON.stringify(shown), /s3cr/);
    assert.deepEqual(smtpProvider.redact({ url: 'smtp://relay.example.com', from: 'a@example.com' }), {
      url: 'smtp://relay.example.com',
      from: 'a@example.com',
    });
  });
});
