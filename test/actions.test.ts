import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { type TestContext, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { actionLinkUrl } from '../src/actions/links.ts';
import { ManualClock } from '../src/clock.ts';
import type { Engine } from '../src/db/engine.ts';
import { escalationTimerId } from '../src/escalation/timer-ids.ts';
import { scheduleTimers } from '../src/noise/timers.ts';
import { claimEvents, markRouted } from '../src/routing/routing.repo.ts';
import { loadKeys } from '../src/settings/keys.ts';
import { type CreatedSource, createSource, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, waitFor } from './helpers.ts';
import { type Receiver, startReceiver } from './receiver.ts';
import { openInboxStream } from './sse.ts';

const SLACK_SECRET = 'slack-signing-secret-for-tests';

interface Setup {
  h: TestHerald;
  clock: ManualClock;
  receiver: Receiver;
  source: CreatedSource & { callback_secret: string };
  users: { id: string; name: string; email: string; token: string }[];
}

async function setup(t: TestContext, engine: Engine, people = 3, start?: number): Promise<Setup> {
  const clock = new ManualClock(start);
  const h = await startHerald(t, engine, {
    clock,
    workers: false,
    env: { HERALD_SLACK_SIGNING_SECRET: SLACK_SECRET, HERALD_WEBHOOK_RETRY_SCHEDULE: '5,5,5,5,5' },
  });
  const receiver = await startReceiver(t);
  const source = (await createSource(h, { callback_url: receiver.url })) as Setup['source'];
  assert.match(source.callback_secret, /^whsec_/);
  const users = [];
  for (let i = 0; i < people; i++) {
    const name = ['Alice', 'Bob', 'Carol', 'Dan'][i]!;
    const user = await createUser(h, { name, email: `${name.toLowerCase()}-${Math.random()}@example.com` });
    users.push({ id: user.id, name, email: user.email!, token: await userToken(h, user.id) });
  }
  return { h, clock, receiver, source, users };
}

const APPROVAL = [
  { id: 'approve', label: 'Approve' },
  { id: 'reject', label: 'Reject', comment: 'required', confirm: 'Reject this purchase order?' },
];

/** Publishes an actionable event to the users and routes it; returns the event id. */
async function publish(s: Setup, fields: Record<string, unknown> = {}): Promise<string> {
  const res = await s.h.api(
    'POST',
    '/v1/events',
    {
      type: 'purchase_order.approval_requested',
      id: `po-${Math.random().toString(36).slice(2)}`,
      subject: 'PO-4711',
      title: 'Approve PO-4711',
      recipients: { users: s.users.map((u) => u.id) },
      actions: APPROVAL,
      ...fields,
    },
    s.source.api_key,
  );
  assert.equal(res.status, 202, res.text);
  while ((await s.h.workers.router.runOnce()) > 0);
  return res.body.id as string;
}

async function notificationOf(s: Setup, user: Setup['users'][number], eventId: string) {
  const list = await s.h.api('GET', '/v1/me/notifications', undefined, user.token);
  const found = list.body.items.find((n: { event_id: string }) => n.event_id === eventId);
  assert.ok(found, `no notification of ${eventId} for ${user.name}`);
  return found;
}

const act = (s: Setup, user: Setup['users'][number], id: string, action: string, body: unknown = {}) =>
  s.h.api('POST', `/v1/me/notifications/${id}/actions/${action}`, body, user.token);

async function drainDeliveries(s: Setup) {
  while ((await s.h.workers.dispatcher.runOnce()) > 0);
}

for (const engine of ENGINES) {
  test(`[${engine}] a rule gives its actions and response policy to events that declare none`, async (t) => {
    const s = await setup(t, engine, 2);
    const rule = await s.h.api('PUT', '/v1/rules/po-approvals', {
      match: { types: ['purchase_order.*'] },
      recipients: { users: s.users.map((u) => u.id) },
      channels: ['inapp'],
      actions: APPROVAL,
      response_policy: 'all',
    });
    assert.equal(rule.status, 201, rule.text);
    assert.deepEqual(rule.body.actions, APPROVAL);
    assert.equal(rule.body.response_policy, 'all');
    const refused = await s.h.api('PUT', '/v1/rules/lonely-policy', {
      match: { types: ['x.*'] },
      recipients: { users: [s.users[0]!.id] },
      channels: ['inapp'],
      response_policy: 'all',
    });
    assert.equal(refused.status, 400, refused.text);

    const fromRule = await publish(s, { actions: undefined, recipients: undefined });
    const own = await publish(s, {
      actions: [{ id: 'acknowledge', label: 'Got it' }],
      recipients: undefined,
    });
    const [alice, bob] = s.users;
    const n = await notificationOf(s, alice!, fromRule);
    assert.deepEqual(
      n.actions.map((a: { id: string }) => a.id),
      ['approve', 'reject'],
    );
    assert.equal((await act(s, alice!, n.id, 'approve')).status, 200);
    // Every recipient must answer (the rule's policy): Bob still can.
    const nb = await notificationOf(s, bob!, fromRule);
    assert.equal((await act(s, bob!, nb.id, 'approve')).status, 200);
    const mine = await notificationOf(s, alice!, own);
    assert.deepEqual(
      mine.actions.map((a: { id: string }) => a.id),
      ['acknowledge'],
      "the event's own actions win",
    );
  });

  test(`[${engine}] an approval is written back to the source, signed, and shown on the notification and event`, async (t) => {
    // Real time: standardwebhooks refuses signatures whose timestamp is far from its own clock.
    const s = await setup(t, engine, 1, Date.now());
    const eventId = await publish(s);
    const [alice] = s.users;
    const n = await notificationOf(s, alice!, eventId);
    assert.deepEqual(
      n.actions.map((a: { id: string }) => a.id),
      ['approve', 'reject'],
    );
    const res = await act(s, alice!, n.id, 'approve', { comment: 'fine by me' });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.response.action, 'approve');
    assert.equal(res.body.notification.state, 'resolved');
    assert.equal(res.body.notification.resolved_by, 'Alice');
    assert.equal(res.body.notification.write_back.status, 'pending');

    await drainDeliveries(s);
    const [request] = await s.receiver.waitForRequests(1);
    const body = new Webhook(s.source.callback_secret).verify(
      request!.body,
      request!.headers as Record<string, string>,
    ) as { type: string; data: Record<string, unknown> };
    assert.equal(body.type, 'response.created');
    assert.equal(body.data['event_id'], eventId);
    assert.equal(body.data['subject'], 'PO-4711');
    assert.equal(body.data['action'], 'approve');
    assert.equal(body.data['comment'], 'fine by me');
    assert.deepEqual(body.data['responder'], { id: alice!.id, name: 'Alice', email: alice!.email });
    assert.match(String(body.data['source_event_id']), /^po-/);

    const after = await s.h.api('GET', `/v1/me/notifications/${n.id}`, undefined, alice!.token);
    assert.deepEqual(
      { status: after.body.write_back.status, attempts: after.body.write_back.attempts },
      { status: 'succeeded', attempts: 1 },
    );
    const event = await s.h.api('GET', `/v1/events/${eventId}`);
    assert.equal(event.body.resolution, 'responded');
    assert.equal(event.body.write_back.status, 'succeeded');
    assert.equal(event.body.responses[0].action, 'approve');
    const deliveries = await s.h.api('GET', '/v1/deliveries?channel=callback');
    assert.equal(deliveries.status, 200, deliveries.text);
    assert.equal(deliveries.body.items.length, 1);
  });

  test(`[${engine}] the first response wins across a group; the others see "handled by" in the API and the stream`, async (t) => {
    const s = await setup(t, engine, 3);
    s.h.deps.hub.start();
    const base = await s.h.listen();
    const eventId = await publish(s);
    const [alice, bob, carol] = s.users;
    const bobsNotification = await notificationOf(s, bob!, eventId);
    const stream = await openInboxStream(t, base, bob!.token);

    const n = await notificationOf(s, alice!, eventId);
    assert.equal((await act(s, alice!, n.id, 'approve')).status, 200);

    const updated = await waitFor(() => stream.frames.find((f) => f.event === 'notification.updated'));
    const shown = JSON.parse(updated.data);
    assert.equal(shown.id, bobsNotification.id);
    assert.equal(shown.state, 'resolved');
    assert.equal(shown.resolved_by, 'Alice');
    assert.equal(shown.response.action, 'approve');

    const carols = await notificationOf(s, carol!, eventId);
    assert.equal(carols.state, 'resolved');
    assert.equal(carols.resolved_by, 'Alice');

    const late = await act(s, bob!, bobsNotification.id, 'reject', { comment: 'no' });
    assert.equal(late.status, 409, late.text);
    assert.equal(late.body.code, 'already_responded');
    assert.match(late.body.detail, /Alice \(approve\)/);
    assert.equal(late.body.responded_by[0].name, 'Alice');

    const again = await act(s, alice!, n.id, 'approve');
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.response.at, (await notificationOf(s, alice!, eventId)).response.at);
    const changed = await act(s, alice!, n.id, 'reject', { comment: 'changed my mind' });
    assert.equal(changed.status, 409);
    await drainDeliveries(s);
    assert.equal(s.receiver.requests.length, 1);
  });

  test(`[${engine}] unknown actions and missing required comments are refused and change nothing`, async (t) => {
    const s = await setup(t, engine, 1);
    const eventId = await publish(s);
    const [alice] = s.users;
    const n = await notificationOf(s, alice!, eventId);
    const unknown = await act(s, alice!, n.id, 'escalate');
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, 'unknown_action');
    assert.deepEqual(unknown.body.actions, ['approve', 'reject']);
    const bare = await act(s, alice!, n.id, 'reject', { comment: '  ' });
    assert.equal(bare.status, 400);
    assert.equal(bare.body.code, 'validation_failed');
    const notFound = await act(s, alice!, 'ntf_nope', 'approve');
    assert.equal(notFound.status, 404);
    const still = await notificationOf(s, alice!, eventId);
    assert.equal(still.state, 'unread');
    assert.equal(still.response, null);
  });

  test(`[${engine}] "all" waits for every recipient; a quorum closes the event at n responses`, async (t) => {
    const s = await setup(t, engine, 3);
    const [alice, bob, carol] = s.users;
    const all = await publish(s, { response_policy: 'all' });
    for (const user of [alice!, bob!]) {
      const n = await notificationOf(s, user, all);
      assert.equal((await act(s, user, n.id, 'approve')).status, 200);
    }
    assert.equal((await notificationOf(s, carol!, all)).state, 'unread');
    assert.equal((await s.h.api('GET', `/v1/events/${all}`)).body.resolution, null);
    const last = await notificationOf(s, carol!, all);
    assert.equal((await act(s, carol!, last.id, 'approve')).status, 200);
    assert.equal((await s.h.api('GET', `/v1/events/${all}`)).body.resolution, 'responded');

    const quorum = await publish(s, { response_policy: { quorum: 2 } });
    assert.deepEqual((await s.h.api('GET', `/v1/events/${quorum}`)).body.response_policy, { quorum: 2 });
    for (const user of [alice!, bob!]) {
      const n = await notificationOf(s, user, quorum);
      assert.equal((await act(s, user, n.id, 'approve')).status, 200);
    }
    const carols = await notificationOf(s, carol!, quorum);
    assert.equal(carols.state, 'resolved');
    assert.equal(carols.resolved_by, 'Alice, Bob');
    const late = await act(s, carol!, carols.id, 'approve');
    assert.equal(late.status, 409);
    assert.match(late.body.detail, /Alice \(approve\), Bob \(approve\)/);
    await drainDeliveries(s);
    assert.equal(s.receiver.requests.length, 5);
  });

  test(`[${engine}] an email action link: GET shows a page and changes nothing, POST responds`, async (t) => {
    const s = await setup(t, engine, 1);
    const eventId = await publish(s);
    const [alice] = s.users;
    const n = await notificationOf(s, alice!, eventId);
    const keys = await loadKeys(s.h.store.db);
    const link = (action: string, expiresAt = s.clock.now() + 3600_000) =>
      actionLinkUrl('http://x', keys, { notificationId: n.id, userId: alice!.id, action, expiresAt }).slice(
        'http://x'.length,
      );
    const page = await s.h.app.inject({
      method: 'GET',
      url: link('reject'),
      headers: { accept: 'text/html' },
    });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /Reject this purchase order\?/);
    assert.match(page.body, /<textarea name="comment"/);
    assert.equal((await notificationOf(s, alice!, eventId)).state, 'unread');

    const posted = await s.h.app.inject({
      method: 'POST',
      url: link('reject'),
      headers: { accept: 'text/html', 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'comment=Over+budget',
    });
    assert.equal(posted.statusCode, 200, posted.body);
    assert.match(posted.body, /recorded/);
    const after = await notificationOf(s, alice!, eventId);
    assert.equal(after.state, 'resolved');
    assert.equal(after.response.comment, 'Over budget');

    const expired = link('approve', s.clock.now() - 1);
    const old = await s.h.app.inject({ method: 'GET', url: expired });
    assert.equal(old.statusCode, 400);
    assert.equal(old.json().code, 'invalid_link');
    const tampered = `${link('approve').slice(0, -3)}abc`;
    const bad = await s.h.app.inject({ method: 'POST', url: tampered, headers: { accept: 'text/html' } });
    assert.equal(bad.statusCode, 400, bad.body);
    assert.match(bad.headers['content-type'] as string, /text\/html/, bad.body);
  });

  test(`[${engine}] Slack buttons respond when signed by Slack, and are refused unsigned or stale`, async (t) => {
    const s = await setup(t, engine, 1);
    const eventId = await publish(s);
    const [alice] = s.users;
    const n = await notificationOf(s, alice!, eventId);
    const payload = JSON.stringify({
      type: 'block_actions',
      user: { id: 'U1', email: alice!.email },
      actions: [{ action_id: `herald:approve:${n.id}`, value: 'approve' }],
    });
    const body = `payload=${encodeURIComponent(payload)}`;
    const send = (headers: Record<string, string>) =>
      s.h.app.inject({
        method: 'POST',
        url: '/v1/integrations/slack/interactions',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
        payload: body,
      });
    const sign = (ts: number, text = body) =>
      `v0=${createHmac('sha256', SLACK_SECRET).update(`v0:${ts}:${text}`).digest('hex')}`;
    const now = Math.floor(s.clock.now() / 1000);

    assert.equal((await send({})).statusCode, 401);
    const forged = await send({
      'x-slack-request-timestamp': String(now),
      'x-slack-signature': sign(now, 'x'),
    });
    assert.equal(forged.statusCode, 401);
    const stale = await send({
      'x-slack-request-timestamp': String(now - 600),
      'x-slack-signature': sign(now - 600),
    });
    assert.equal(stale.statusCode, 401);
    assert.equal((await notificationOf(s, alice!, eventId)).state, 'unread');

    const ok = await send({ 'x-slack-request-timestamp': String(now), 'x-slack-signature': sign(now) });
    assert.equal(ok.statusCode, 200, ok.body);
    const after = await notificationOf(s, alice!, eventId);
    assert.equal(after.state, 'resolved');
    assert.equal(after.response.action, 'approve');
  });

  test(`[${engine}] a source resolves its own event by dedup_key: notifications resolve, escalation timers stop`, async (t) => {
    const s = await setup(t, engine, 2);
    const eventId = await publish(s, {
      dedup_key: 'erp-crm-sync',
      actions: [{ id: 'acknowledge', label: 'Ack' }],
    });
    const timerId = escalationTimerId(eventId, 'level:0:0');
    await scheduleTimers(
      s.h.store.db,
      [
        {
          id: timerId,
          kind: 'escalation.level',
          due_at: s.clock.now() + 60_000,
          payload: { event_id: eventId },
        },
      ],
      s.clock.now(),
    );
    const res = await s.h.api(
      'POST',
      '/v1/events/actions',
      { event_action: 'resolve', dedup_key: 'erp-crm-sync' },
      s.source.api_key,
    );
    assert.equal(res.status, 200, res.text);
    assert.equal(res.body.events[0].changed, true);
    assert.equal(res.body.events[0].notifications_resolved, 2);
    for (const user of s.users) {
      const n = await notificationOf(s, user, eventId);
      assert.equal(n.state, 'resolved');
      assert.equal(n.resolved_by, s.source.name);
    }
    const left = await s.h.store.db.selectFrom('timers').select('id').where('id', '=', timerId).execute();
    assert.deepEqual(left, []);
    const again = await s.h.api('POST', `/v1/events/${eventId}/resolve`, undefined, s.source.api_key);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.events[0].changed, false);
    const other = await createSource(s.h);
    const foreign = await s.h.api('POST', `/v1/events/${eventId}/cancel`, undefined, other.api_key);
    assert.equal(foreign.status, 404);
    const late = await act(s, s.users[0]!, (await notificationOf(s, s.users[0]!, eventId)).id, 'acknowledge');
    assert.equal(late.status, 409);
    assert.equal(s.receiver.requests.length, 0);

    // The sync fails again: with its earlier notification resolved, that is a new notification, not an update.
    const recurrence = await publish(s, {
      dedup_key: 'erp-crm-sync',
      actions: [{ id: 'acknowledge', label: 'Ack' }],
    });
    const fresh = await notificationOf(s, s.users[0]!, recurrence);
    assert.equal(fresh.state, 'unread');
    assert.equal(fresh.occurrences, 1);
    assert.equal((await notificationOf(s, s.users[0]!, eventId)).state, 'resolved');
  });

  test(`[${engine}] an event its source closed before routing: resolved notifies nobody; acknowledged notifies but does not escalate`, async (t) => {
    const s = await setup(t, engine, 2);
    const policy = await s.h.api('PUT', '/v1/escalation-policies/early', {
      levels: [{ after: '5m', targets: { recipients: true }, channels: ['inapp'] }],
    });
    assert.equal(policy.status, 201, policy.text);
    const publishUnrouted = async (id: string) => {
      const res = await s.h.api(
        'POST',
        '/v1/events',
        {
          type: 'incident.opened',
          id,
          title: id,
          recipients: { users: s.users.map((u) => u.id) },
          actions: [{ id: 'acknowledge', label: 'Ack' }],
          escalation_policy: 'early',
          due_at: new Date(s.clock.now() + 60_000).toISOString(),
        },
        s.source.api_key,
      );
      assert.equal(res.status, 202, res.text);
      return res.body.id as string;
    };
    const resolved = await publishUnrouted('closed-early');
    const acked = await publishUnrouted('acked-early');
    for (const [id, action] of [
      [resolved, 'resolve'],
      [acked, 'acknowledge'],
    ]) {
      const res = await s.h.api('POST', `/v1/events/${id}/${action}`, undefined, s.source.api_key);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.body.events[0].changed, true);
    }
    while ((await s.h.workers.router.runOnce()) > 0);

    const shown = async (id: string) => (await s.h.api('GET', `/v1/events/${id}`)).body;
    const r = await shown(resolved);
    assert.equal(r.status, 'routed');
    assert.deepEqual(r.notifications, []);
    assert.equal(r.escalation, null);
    assert.equal(r.routing.recipient_count, 2);
    assert.deepEqual(r.routing.closed, {
      resolution: 'resolved',
      by: `source:${s.source.id}`,
      notified: false,
      escalated: false,
    });
    const a = await shown(acked);
    assert.equal(a.notifications.length, 2);
    assert.equal(a.escalation, null);
    assert.equal(a.routing.closed.resolution, 'acknowledged');
    assert.equal(a.routing.closed.notified, true);
    assert.equal(a.routing.closed.escalated, false);
    const timers = await s.h.store.db.selectFrom('timers').select('id').execute();
    assert.deepEqual(timers, []);
    const inbox = await s.h.api('GET', '/v1/me/notifications', undefined, s.users[0]!.token);
    assert.deepEqual(
      inbox.body.items.map((n: { event_id: string }) => n.event_id),
      [acked],
    );
  });

  test(`[${engine}] an event its source closes while a routing pass decides it is given back and decided afresh`, async (t) => {
    const s = await setup(t, engine, 2);
    const res = await s.h.api(
      'POST',
      '/v1/events',
      { type: 'incident.opened', id: 'closing', recipients: { users: s.users.map((u) => u.id) } },
      s.source.api_key,
    );
    assert.equal(res.status, 202, res.text);
    const id = res.body.id as string;
    // A pass claims the event and decides it as open; the source resolves it before that pass commits.
    const now = s.clock.now();
    const { events: claimed, lease } = await claimEvents(s.h.store, now, now + 15_000, 10);
    assert.deepEqual(
      claimed.map((e) => e.id),
      [id],
    );
    const closed = await s.h.api('POST', `/v1/events/${id}/resolve`, undefined, s.source.api_key);
    assert.equal(closed.status, 200, closed.text);
    const routed = await s.h.store.db.transaction().execute((trx) => markRouted(trx, claimed, lease, now));
    assert.equal(routed.size, 0);
    const row = await s.h.store.db
      .selectFrom('events')
      .select(['status', 'locked_until'])
      .where('id', '=', id)
      .executeTakeFirstOrThrow();
    assert.deepEqual(
      { ...row, locked_until: Number(row.locked_until) },
      { status: 'pending', locked_until: 0 },
    );

    // The next pass sees it resolved: nobody is notified of it.
    assert.equal(await s.h.workers.router.runOnce(), 1);
    const shown = (await s.h.api('GET', `/v1/events/${id}`)).body;
    assert.equal(shown.status, 'routed');
    assert.deepEqual(shown.notifications, []);
    assert.equal(shown.routing.closed.resolution, 'resolved');
  });

  test(`[${engine}] a callback that is down receives every response of an event, in order, when it is back`, async (t) => {
    const s = await setup(t, engine, 3);
    const eventId = await publish(s, { response_policy: 'all' });
    s.receiver.reply({ status: 503 }, { status: 503 });
    for (const user of s.users) {
      const n = await notificationOf(s, user, eventId);
      assert.equal((await act(s, user, n.id, 'approve')).status, 200);
    }
    await drainDeliveries(s);
    assert.equal(s.receiver.requests.length, 1);
    for (let i = 0; i < 6 && s.receiver.requests.length < 5; i++) {
      s.clock.advance(10_000);
      await drainDeliveries(s);
    }
    const names = s.receiver.requests.map((r) => JSON.parse(r.body).data.responder.name);
    assert.deepEqual(names, ['Alice', 'Alice', 'Alice', 'Bob', 'Carol']);
    const event = await s.h.api('GET', `/v1/events/${eventId}`);
    assert.deepEqual(
      event.body.responses.map((r: { write_back: { status: string; attempts: number } }) => [
        r.write_back.status,
        r.write_back.attempts,
      ]),
      [
        ['succeeded', 3],
        ['succeeded', 1],
        ['succeeded', 1],
      ],
    );
  });
}
