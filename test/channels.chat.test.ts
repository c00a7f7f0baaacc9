import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, type TestContext, test } from 'node:test';
import { request } from 'undici';
import { ChannelConfigError, type Message, type Provider } from '../src/channels/channel.ts';
import { slackBody, slackProvider } from '../src/channels/slack.ts';
import { teamsBody, teamsProvider } from '../src/channels/teams.ts';
import { createOutboundAgent } from '../src/delivery/ssrf.ts';
import { channelMessage } from './factories.ts';
import { startChatPeer } from './peers/chat.ts';

const NOW = Date.UTC(2026, 0, 15, 12, 0, 0);

function message(overrides: Partial<Message> = {}): Message {
  return channelMessage({
    actions: [
      { id: 'approve', label: 'Approve', url: 'https://herald.example.com/a/approve?sig=x' },
      { id: 'reject', label: 'Reject', url: 'https://herald.example.com/a/reject?sig=y' },
    ],
    ...overrides,
  });
}

type Kind = typeof slackProvider | typeof teamsProvider;

function provider(
  t: TestContext,
  kind: Kind,
  options: { allow?: string[]; timeoutMs?: number } = {},
): Provider<string> {
  const agent = createOutboundAgent({ allow: options.allow ?? ['127.0.0.1/32'], connectTimeoutMs: 5000 });
  const created = kind.create(kind.validate({}), {
    dispatcher: agent,
    timeoutMs: options.timeoutMs ?? 10_000,
    now: () => NOW,
  });
  t.after(async () => {
    await created.close();
    await agent.close();
  });
  return created;
}

/** A URL on a port nothing listens on any more. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/services/T1/B1/x`;
}

const blocksOf = (body: object) => (body as { blocks: any[] }).blocks;
const cardOf = (body: object) => (body as any).attachments[0].content;

describe('slackBody', () => {
  test('builds header, section, context and link buttons with a fallback text', () => {
    const body = slackBody(message()) as { text: string; blocks: any[] };
    assert.equal(body.text, 'PO 4711 needs approval — Acme Corp ordered 12 laptops for 14,400 EUR.');
    assert.deepEqual(
      body.blocks.map((b) => b.type),
      ['header', 'section', 'context', 'actions'],
    );
    assert.deepEqual(body.blocks[0].text, {
      type: 'plain_text',
      text: 'PO 4711 needs approval',
      emoji: true,
    });
    assert.deepEqual(body.blocks[1].text, {
      type: 'mrkdwn',
      text: 'Acme Corp ordered 12 laptops for 14,400 EUR.',
    });
    const context = body.blocks[2].elements[0].text as string;
    assert.match(context, /^:warning: \*warning\* · po\.approval_requested · event evt_1$/);
    assert.deepEqual(body.blocks[3].elements, [
      {
        type: 'button',
        text: { type: 'plain_text', text: 'Open', emoji: true },
        action_id: 'herald:open:ntf_1',
        url: 'https://erp.example.com/po/4711',
        style: 'primary',
      },
      {
        type: 'button',
        text: { type: 'plain_text', text: 'Approve', emoji: true },
        action_id: 'herald:approve:ntf_1',
        value: 'approve',
        url: 'https://herald.example.com/a/approve?sig=x',
        style: 'primary',
      },
      {
        type: 'button',
        text: { type: 'plain_text', text: 'Reject', emoji: true },
        action_id: 'herald:reject:ntf_1',
        value: 'reject',
        url: 'https://herald.example.com/a/reject?sig=y',
        style: 'danger',
      },
    ]);
  });

  test('escapes &, < and > in mrkdwn text but not in the plain-text header', () => {
    const body = slackBody(message({ title: 'A <b> & C', text: 'if a < b && c > d <@U123>' })) as any;
    assert.equal(body.blocks[0].text.text, 'A <b> & C');
    assert.equal(body.blocks[1].text.text, 'if a &lt; b &amp;&amp; c &gt; d &lt;@U123&gt;');
    assert.equal(body.text, 'A &lt;b&gt; &amp; C — if a &lt; b &amp;&amp; c &gt; d &lt;@U123&gt;');
  });

  test('keeps Block Kit limits: header 150, section 3000 (never cutting an entity), button text 75', () => {
    const body = slackBody(
      message({
        title: 'T'.repeat(400),
        text: '&'.repeat(2000),
        actions: [{ id: 'approve', label: 'L'.repeat(100), url: 'https://h.example.com/a' }],
      }),
    );
    const [header, section, , actions] = blocksOf(body);
    assert.equal(header.text.text.length, 150);
    assert.ok(header.text.text.endsWith('…'));
    assert.ok(section.text.text.length <= 3000);
    assert.match(section.text.text, /^(&amp;)+…$/);
    assert.equal(actions.elements[1].text.text.length, 75);
  });

  test('never splits a surrogate pair when cutting', () => {
    const header = blocksOf(slackBody(message({ title: '😀'.repeat(100) })))[0].text.text as string;
    assert.ok(header.length <= 150);
    assert.equal(header, `${'😀'.repeat(74)}…`);
  });

  test('omits the actions block when there is neither a link nor an action', () => {
    const body = slackBody(message({ url: null, actions: [] }));
    assert.deepEqual(
      blocksOf(body).map((b) => b.type),
      ['header', 'section', 'context'],
    );
  });

  test('makes an action without a URL an interactive button for the Slack app to post back', () => {
    const body = slackBody(message({ url: null, actions: [{ id: 'ack', label: 'Acknowledge', url: null }] }));
    const [button] = blocksOf(body)[3].elements as any[];
    assert.equal(button.action_id, 'herald:ack:ntf_1');
    assert.equal(button.value, 'ack');
    assert.equal(button.url, undefined);
  });

  test('uses the event id in action ids when there is no notification, and caps buttons at 25', () => {
    const actions = Array.from({ length: 40 }, (_, i) => ({
      id: `a${i}`,
      label: `A${i}`,
      url: `https://h.example.com/${i}`,
    }));
    const body = slackBody(message({ notificationId: null, actions }));
    const elements = blocksOf(body)[3].elements as any[];
    assert.equal(elements.length, 25);
    assert.equal(elements[1].action_id, 'herald:a0:evt_1');
    assert.equal(elements[1].style, undefined);
  });

  test('leaves out the section for an empty text', () => {
    const body = slackBody(message({ text: '' })) as any;
    assert.equal(body.text, 'PO 4711 needs approval');
    assert.equal(
      body.blocks.some((b: any) => b.type === 'section'),
      false,
    );
  });
});

describe('teamsBody', () => {
  test('is a message with one Adaptive Card: title, text, facts and OpenUrl actions', () => {
    const body = teamsBody(message()) as any;
    assert.equal(body.type, 'message');
    assert.equal(body.attachments.length, 1);
    assert.equal(body.attachments[0].contentType, 'application/vnd.microsoft.card.adaptive');
    assert.equal(body.attachments[0].contentUrl, null);
    const card = body.attachments[0].content;
    assert.equal(card.$schema, 'http://adaptivecards.io/schemas/adaptive-card.json');
    assert.equal(card.type, 'AdaptiveCard');
    assert.equal(card.version, '1.4');
    assert.deepEqual(card.body[0], {
      type: 'TextBlock',
      text: 'PO 4711 needs approval',
      weight: 'bolder',
      size: 'medium',
      wrap: true,
    });
    assert.deepEqual(card.body[1], {
      type: 'TextBlock',
      text: 'Acme Corp ordered 12 laptops for 14,400 EUR.',
      wrap: true,
    });
    assert.deepEqual(card.body[2], {
      type: 'FactSet',
      facts: [
        { title: 'Severity', value: 'warning' },
        { title: 'Type', value: 'po.approval_requested' },
        { title: 'Event', value: 'evt_1' },
      ],
    });
    assert.deepEqual(card.actions, [
      { type: 'Action.OpenUrl', title: 'Open', url: 'https://erp.example.com/po/4711' },
      {
        type: 'Action.OpenUrl',
        title: 'Approve',
        url: 'https://herald.example.com/a/approve?sig=x',
        style: 'positive',
      },
      {
        type: 'Action.OpenUrl',
        title: 'Reject',
        url: 'https://herald.example.com/a/reject?sig=y',
        style: 'destructive',
      },
    ]);
  });

  test('colours the title for errors and critical messages only', () => {
    for (const [severity, color] of [
      ['info', undefined],
      ['warning', undefined],
      ['error', 'attention'],
      ['critical', 'attention'],
    ] as const) {
      assert.equal(cardOf(teamsBody(message({ severity }))).body[0].color, color, severity);
    }
  });

  test('offers only Action.OpenUrl, and no actions at all when nothing has a URL', () => {
    const card = cardOf(teamsBody(message({ url: null, actions: [{ id: 'ack', label: 'Ack', url: null }] })));
    assert.equal('actions' in card, false);
    const types = (cardOf(teamsBody(message())).actions as any[]).map((a) => a.type);
    assert.deepEqual([...new Set(types)], ['Action.OpenUrl']);
  });
});

describe('chat provider configuration', () => {
  for (const kind of [slackProvider, teamsProvider]) {
    test(`${kind.kind} accepts only {} or nothing and redacts to {}`, () => {
      assert.equal(kind.channel, 'chat');
      assert.deepEqual(kind.validate(undefined), {});
      assert.deepEqual(kind.validate({}), {});
      assert.deepEqual(kind.redact({}), {});
      assert.throws(
        () => kind.validate({ url: 'https://hooks.slack.com/services/T/B/x' }),
        (e: unknown) => e instanceof ChannelConfigError && e.path === '/url' && /the address/.test(e.message),
      );
      for (const bad of [null, 'x', 3, []]) {
        assert.throws(
          () => kind.validate(bad),
          (e: unknown) => e instanceof ChannelConfigError && e.path === '',
        );
      }
    });
  }
});

describe('slack provider against a Slack-like peer', () => {
  test('delivers the Block Kit payload and succeeds on 200 ok', async (t) => {
    const peer = await startChatPeer(t);
    const url = peer.slackWebhook();
    const result = await provider(t, slackProvider).send(message(), url);
    assert.equal(result.outcome, 'succeeded');
    assert.equal(result.statusCode, 200);
    assert.equal(result.response, 'ok');
    const [record] = await peer.waitFor(1);
    assert.equal(record!.url, new URL(url).pathname);
    assert.deepEqual(record!.json, slackBody(message()));
  });

  test('the peer refuses payloads Slack would refuse', async (t) => {
    const peer = await startChatPeer(t);
    const url = peer.slackWebhook();
    for (const [body, status, text] of [
      ['not json', 400, 'invalid_payload'],
      ['{"username":"x"}', 400, 'invalid_payload'],
      [
        JSON.stringify({ blocks: [{ type: 'header', text: { type: 'plain_text', text: 'x'.repeat(151) } }] }),
        400,
        'invalid_blocks',
      ],
      ['{"text":"hi"}', 200, 'ok'],
    ] as const) {
      const response = await request(url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(response.statusCode, status);
      assert.equal(await response.body.text(), text);
    }
  });

  test('maps Slack errors to results', async (t) => {
    const peer = await startChatPeer(t);
    const slack = provider(t, slackProvider);
    const url = peer.slackWebhook();
    const cases = [
      { reply: { status: 400, body: 'invalid_payload' }, outcome: 'failed', gone: false, fault: false },
      { reply: { status: 403, body: 'action_prohibited' }, outcome: 'failed', gone: false, fault: false },
      { reply: { status: 404, body: 'channel_not_found' }, outcome: 'failed', gone: true, fault: false },
      { reply: { status: 410, body: 'no_service' }, outcome: 'failed', gone: true, fault: false },
      { reply: { status: 500, body: 'rollup_error' }, outcome: 'retry', gone: false, fault: true },
      {
        reply: { status: 503, body: '<html>unavailable</html>' },
        outcome: 'retry',
        gone: false,
        fault: true,
      },
    ] as const;
    for (const { reply, outcome, gone, fault } of cases) {
      peer.replyNext(reply);
      const result = await slack.send(message(), url);
      const label = `${reply.status} ${reply.body}`;
      assert.equal(result.outcome, outcome, label);
      assert.equal(result.statusCode, reply.status, label);
      assert.equal(result.addressGone, gone, label);
      assert.equal(result.providerFault, fault, label);
      assert.equal(result.error, reply.body.startsWith('<') ? `HTTP ${reply.status}` : reply.body, label);
    }
  });

  test('an archived channel is gone (410 channel_is_archived), an unknown webhook too (404 no_service)', async (t) => {
    const peer = await startChatPeer(t);
    const slack = provider(t, slackProvider);
    const url = peer.slackWebhook();
    peer.archive(url);
    const archived = await slack.send(message(), url);
    assert.deepEqual(
      [archived.outcome, archived.statusCode, archived.error, archived.addressGone],
      ['failed', 410, 'channel_is_archived', true],
    );
    const unknown = await slack.send(message(), `${peer.origin}/services/TNOPE/BNOPE/nope`);
    assert.deepEqual(
      [unknown.outcome, unknown.statusCode, unknown.error, unknown.addressGone],
      ['failed', 404, 'no_service', true],
    );
  });

  test('429 is retried after Retry-After', async (t) => {
    const peer = await startChatPeer(t);
    peer.replyNext({ status: 429, body: 'rate_limited', headers: { 'retry-after': '30' } });
    const result = await provider(t, slackProvider).send(message(), peer.slackWebhook());
    assert.equal(result.outcome, 'retry');
    assert.equal(result.retryAfterMs, 30_000);
    assert.equal(result.providerFault, false);
    assert.equal(result.error, 'rate_limited');
  });

  test('a connection refused is retried as a provider fault', async (t) => {
    const result = await provider(t, slackProvider).send(message(), await deadUrl());
    assert.equal(result.outcome, 'retry');
    assert.equal(result.statusCode, null);
    assert.equal(result.providerFault, true);
    assert.match(result.error!, /^network: /);
  });

  test('a webhook that never answers times out and is retried', async (t) => {
    const peer = await startChatPeer(t);
    peer.stall();
    const result = await provider(t, slackProvider, { timeoutMs: 300 }).send(message(), peer.slackWebhook());
    assert.equal(result.outcome, 'retry');
    assert.equal(result.providerFault, true);
    assert.match(result.error!, /^timeout: /);
  });

  test('an internal address is refused without retrying, and so is a URL that is not http(s)', async (t) => {
    const peer = await startChatPeer(t);
    const slack = provider(t, slackProvider, { allow: [] });
    const refused = await slack.send(message(), peer.slackWebhook());
    assert.equal(refused.outcome, 'failed');
    assert.match(refused.error!, /^refused: 127\.0\.0\.1 is a loopback address/);
    assert.equal(peer.records.length, 0);
    const bad = await slack.send(message(), 'ftp://hooks.example.com/x');
    assert.equal(bad.outcome, 'failed');
    assert.match(bad.error!, /^bad address/);
  });
});

describe('teams provider against a Workflows-like peer', () => {
  test('delivers the Adaptive Card and succeeds on 202', async (t) => {
    const peer = await startChatPeer(t);
    const url = peer.teamsWebhook();
    const result = await provider(t, teamsProvider).send(message({ severity: 'critical' }), url);
    assert.equal(result.outcome, 'succeeded');
    assert.equal(result.statusCode, 202);
    assert.equal(result.response, null);
    const [record] = await peer.waitFor(1);
    assert.deepEqual(record!.json, teamsBody(message({ severity: 'critical' })));
  });

  test('the peer refuses anything but a message with an Adaptive Card', async (t) => {
    const peer = await startChatPeer(t);
    const response = await request(peer.teamsWebhook(), {
      method: 'POST',
      body: '{"text":"MessageCard style"}',
    });
    assert.equal(response.statusCode, 400);
    assert.equal(((await response.body.json()) as any).error.code, 'InvalidRequestContent');
  });

  test('a deleted workflow is gone (404); a wrong signature fails without removing the address', async (t) => {
    const peer = await startChatPeer(t);
    const teams = provider(t, teamsProvider);
    const url = peer.teamsWebhook();
    const unsigned = await teams.send(message(), url.replace(/sig=[^&]+/, 'sig=forged'));
    assert.deepEqual(
      [unsigned.outcome, unsigned.statusCode, unsigned.addressGone, unsigned.providerFault],
      ['failed', 401, false, false],
    );
    assert.match(unsigned.error!, /^DirectApiAuthorizationRequired: /);
    peer.archive(url);
    const gone = await teams.send(message(), url);
    assert.deepEqual([gone.outcome, gone.statusCode, gone.addressGone], ['failed', 404, true]);
    assert.match(gone.error!, /^WorkflowNotFound: /);
  });

  test('maps Workflows errors to results', async (t) => {
    const peer = await startChatPeer(t);
    const teams = provider(t, teamsProvider);
    const url = peer.teamsWebhook();
    const json = (code: string) => JSON.stringify({ error: { code, message: 'm' } });
    const cases = [
      {
        reply: { status: 400, body: json('InvalidRequestContent') },
        outcome: 'failed',
        fault: false,
        wait: null,
      },
      { reply: { status: 403, body: json('Forbidden') }, outcome: 'failed', fault: false, wait: null },
      { reply: { status: 408, body: '' }, outcome: 'retry', fault: false, wait: null },
      {
        reply: { status: 429, body: json('WorkflowTriggerIsThrottled'), headers: { 'retry-after': '12' } },
        outcome: 'retry',
        fault: false,
        wait: 12_000,
      },
      { reply: { status: 502, body: json('BadGateway') }, outcome: 'retry', fault: true, wait: null },
    ] as const;
    for (const { reply, outcome, fault, wait } of cases) {
      peer.replyNext(reply);
      const result = await teams.send(message(), url);
      assert.equal(result.outcome, outcome, String(reply.status));
      assert.equal(result.providerFault, fault, String(reply.status));
      assert.equal(result.retryAfterMs, wait, String(reply.status));
      assert.equal(result.addressGone, false, String(reply.status));
    }
    assert.equal(peer.records.at(-1)!.status, 502);
  });

  test("retries a legacy connector's 200 that says it was throttled, and accepts its plain 200 `1`", async (t) => {
    const peer = await startChatPeer(t);
    const teams = provider(t, teamsProvider);
    const url = peer.teamsWebhook();
    peer.replyNext(
      {
        status: 200,
        body: 'Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429',
      },
      { status: 200, body: '1' },
    );
    const throttled = await teams.send(message(), url);
    assert.equal(throttled.outcome, 'retry');
    assert.match(throttled.error!, /HTTP error 429/);
    const accepted = await teams.send(message(), url);
    assert.equal(accepted.outcome, 'succeeded');
  });

  test('a connection refused is retried as a provider fault', async (t) => {
    const result = await provider(t, teamsProvider).send(message(), await deadUrl());
    assert.deepEqual([result.outcome, result.providerFault, result.statusCode], ['retry', true, null]);
  });
});
