import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { createGroup, createSource, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, waitFor } from './helpers.ts';
import { eventOf, explain, people, publish, routeAll, rule, sends } from './routing.fixtures.ts';
import { openInboxStream } from './sse.ts';

const MINUTE = 60_000;

async function setUp(t: Parameters<typeof startHerald>[0], engine: (typeof ENGINES)[number]) {
  const clock = new ManualClock();
  const h = await startHerald(t, engine, { workers: false, clock });
  const source = await createSource(h, { id: 'erp' });
  await people(h, { id: 'lead' }, { id: 'sre-1' }, { id: 'outsider' });
  await createGroup(h, 'sre', ['sre-1']);
  // `lead` directly, `sre-1` through the nested `sre` group.
  const queue = await h.api('PUT', '/v1/groups/on-duty', {
    name: 'On duty',
    members: ['lead'],
    groups: ['sre'],
    queue: true,
  });
  assert.equal(queue.status, 201, queue.text);
  assert.equal(queue.body.queue, true);
  await rule(h, 'integrations', {
    match: { types: ['integration.failed'] },
    recipients: { groups: ['on-duty'] },
    channels: ['inapp', 'email'],
  });
  const tokens = {
    lead: await userToken(h, 'lead'),
    sre: await userToken(h, 'sre-1'),
    outsider: await userToken(h, 'outsider'),
  };
  return { h, clock, key: source.api_key, tokens };
}

/** Fires every escalation timer that is due; returns how many fired. */
async function fireTimers(h: TestHerald): Promise<number> {
  let total = 0;
  for (let n = await h.workers.timers.runOnce(); n > 0; n = await h.workers.timers.runOnce()) total += n;
  return total;
}

const items = (h: TestHerald, token: string, query = '') =>
  h.api('GET', `/v1/me/queues/on-duty/items${query}`, undefined, token);

for (const engine of ENGINES) {
  test(`[${engine}] an integration failure routed to the on-duty queue is one shared item any member can take`, async (t) => {
    const { h, key, tokens } = await setUp(t, engine);
    h.deps.hub.start();
    const base = await h.listen();
    const { frames: sreFrames } = await openInboxStream(t, base, tokens.sre);

    const eventId = await publish(h, key, {
      type: 'integration.failed',
      severity: 'error',
      title: 'SAP sync failed',
    });
    await routeAll(h);

    // One item for the queue, no notification (and no email) for each member.
    const event = await eventOf(h, eventId);
    assert.equal(event.notifications.length, 0);
    assert.equal(event.deliveries.length, 0);
    assert.equal(event.routing.recipient_count, 0);
    assert.equal(event.routing.queues.length, 1);
    const { item_id: itemId, ...queued } = event.routing.queues[0];
    assert.deepEqual(queued, { group_id: 'on-duty', via: ['rule:integrations:queue:on-duty'] });

    const created = await waitFor(() => sreFrames.find((f) => f.event === 'queue.updated'));
    assert.equal(JSON.parse(created.data).id, itemId);
    assert.equal(JSON.parse(created.data).state, 'open');
    assert.equal(created.id, undefined);

    for (const token of [tokens.lead, tokens.sre]) {
      const mine = await h.api('GET', '/v1/me/queues', undefined, token);
      assert.deepEqual(mine.body.items, [{ id: 'on-duty', name: 'On duty', open: 1, taken: 0 }]);
      const list = await items(h, token, '?state=open');
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(
        list.body.items.map((i: { id: string }) => i.id),
        [itemId],
      );
      assert.equal(list.body.items[0].title, 'SAP sync failed');
      assert.equal(list.body.items[0].taken_by, null);
    }
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, tokens.lead)).body.items.length, 0);

    // Someone outside the queue sees neither the queue nor its items.
    assert.deepEqual((await h.api('GET', '/v1/me/queues', undefined, tokens.outsider)).body.items, []);
    assert.equal((await items(h, tokens.outsider)).status, 404);
    const stolen = await h.api(
      'POST',
      `/v1/me/queues/on-duty/items/${itemId}/take`,
      undefined,
      tokens.outsider,
    );
    assert.equal(stolen.status, 404);
    assert.equal((await items(h, tokens.lead, '?state=bogus')).status, 400);

    const act = (who: keyof typeof tokens, action: string) =>
      h.api('POST', `/v1/me/queues/on-duty/items/${itemId}/${action}`, undefined, tokens[who]);

    const taken = await act('lead', 'take');
    assert.equal(taken.status, 200, taken.text);
    assert.equal(taken.body.state, 'taken');
    assert.deepEqual(taken.body.taken_by, { id: 'lead', name: 'User lead' });
    // Taking it again is harmless.
    assert.equal((await act('lead', 'take')).status, 200);

    // The other member sees who took it, live.
    const frame = await waitFor(() =>
      sreFrames.find((f) => f.event === 'queue.updated' && JSON.parse(f.data).state === 'taken'),
    );
    assert.deepEqual(JSON.parse(frame.data).taken_by, { id: 'lead', name: 'User lead' });

    const refused = await act('sre', 'take');
    assert.equal(refused.status, 409);
    assert.equal(refused.body.code, 'already_taken');
    assert.deepEqual(refused.body.taken_by, { id: 'lead', name: 'User lead' });
    assert.match(refused.body.detail, /User lead/);
    assert.equal((await act('sre', 'release')).body.code, 'already_taken');
    assert.equal((await act('sre', 'done')).body.code, 'already_taken');
    assert.deepEqual((await h.api('GET', '/v1/me/queues', undefined, tokens.sre)).body.items[0], {
      id: 'on-duty',
      name: 'On duty',
      open: 0,
      taken: 1,
    });

    const released = await act('lead', 'release');
    assert.equal(released.status, 200);
    assert.equal(released.body.state, 'open');
    assert.equal(released.body.taken_by, null);
    assert.equal((await act('lead', 'release')).status, 200);

    assert.equal((await act('sre', 'take')).status, 200);
    const done = await act('sre', 'done');
    assert.equal(done.status, 200);
    assert.equal(done.body.state, 'done');
    assert.deepEqual(done.body.taken_by, { id: 'sre-1', name: 'User sre-1' });
    assert.equal((await act('lead', 'done')).status, 200);
    const late = await act('lead', 'take');
    assert.equal(late.status, 409);
    assert.equal(late.body.code, 'conflict');

    assert.equal((await items(h, tokens.lead, '?state=open')).body.items.length, 0);
    assert.equal((await items(h, tokens.lead)).body.items[0].state, 'done');

    // The admin's view of the queue, and its audit trail.
    const admin = await h.api('GET', '/v1/groups/on-duty/queue');
    assert.equal(admin.status, 200);
    assert.deepEqual(
      admin.body.items.map((i: { id: string; state: string }) => [i.id, i.state]),
      [[itemId, 'done']],
    );
    assert.equal((await h.api('GET', '/v1/groups/nope/queue')).status, 404);
    const audit = await h.store.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject_id', '=', itemId)
      .orderBy('id')
      .execute();
    assert.deepEqual(
      audit.map((a) => a.action),
      ['queue_item.taken', 'queue_item.released', 'queue_item.taken', 'queue_item.done'],
    );
  });

  test(`[${engine}] explicit recipients and explain reach a queue as one item; routing twice makes no second item`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await rule(h, 'integrations', { match: { types: ['nothing.*'] }, recipients: { users: ['lead'] } });
    const explained = await explain(h, {
      type: 'integration.failed',
      source: 'erp',
      recipients: { groups: ['on-duty'] },
    });
    assert.deepEqual(explained.queues, [
      { group_id: 'on-duty', item_id: null, via: ['recipients:queue:on-duty'] },
    ]);
    assert.equal(explained.recipient_count, 0);

    const first = await publish(h, key, { type: 'integration.failed', recipients: { groups: ['on-duty'] } });
    const second = await publish(h, key, { type: 'integration.failed', recipients: { groups: ['on-duty'] } });
    await routeAll(h);
    const listed = (await h.api('GET', '/v1/groups/on-duty/queue?limit=1')).body;
    const ids = [
      (await eventOf(h, second)).routing.queues[0].item_id,
      (await eventOf(h, first)).routing.queues[0].item_id,
    ];
    assert.deepEqual(
      listed.items.map((i: { id: string }) => i.id),
      [ids[0]],
    );
    const next = await h.api('GET', `/v1/groups/on-duty/queue?limit=1&cursor=${listed.next_cursor}`);
    assert.deepEqual(
      next.body.items.map((i: { id: string }) => i.id),
      [ids[1]],
    );

    // A batch routed again (its lease ran out) finds the items already there.
    await h.store.db.updateTable('events').set({ status: 'pending', locked_until: 0 }).execute();
    await routeAll(h);
    const count = await h.store.db
      .selectFrom('queue_items')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(count.n), 2);

    // Turning the queue off makes the group an ordinary one again: each member is notified.
    await h.api('PUT', '/v1/groups/on-duty', { name: 'On duty', members: ['lead'], groups: ['sre'] });
    const third = await publish(h, key, { type: 'integration.failed', recipients: { groups: ['on-duty'] } });
    await routeAll(h);
    const routed = await eventOf(h, third);
    assert.deepEqual(routed.routing.queues, []);
    assert.deepEqual(routed.notifications.map((n: { user_id: string }) => n.user_id).sort(), [
      'lead',
      'sre-1',
    ]);
  });

  test(`[${engine}] a queue item leaves the open list when its source resolves the event`, async (t) => {
    const { h, key, tokens } = await setUp(t, engine);
    const eventId = await publish(h, key, { type: 'integration.failed', id: 'sync-7' });
    await routeAll(h);
    assert.equal((await items(h, tokens.lead, '?state=open')).body.items.length, 1);
    const acked = await h.api('POST', `/v1/events/${eventId}/acknowledge`, undefined, key);
    assert.equal(acked.status, 200, acked.text);
    assert.equal(
      (await items(h, tokens.lead, '?state=open')).body.items.length,
      1,
      'acknowledged: still to take',
    );
    const resolved = await h.api('POST', `/v1/events/${eventId}/resolve`, undefined, key);
    assert.equal(resolved.status, 200, resolved.text);
    assert.deepEqual((await items(h, tokens.lead, '?state=open')).body.items, []);
    const [done] = (await items(h, tokens.sre, '?state=done')).body.items;
    assert.equal(done.event_id, eventId);
  });

  test(`[${engine}] escalation owner → manager → queue: the last tier is one shared item; the owner's answer closes it`, async (t) => {
    const { h, clock, key, tokens } = await setUp(t, engine);
    await people(h, { id: 'boss' }, { id: 'owner', manager: 'boss' });
    const policy = await h.api('PUT', '/v1/escalation-policies/to-the-desk', {
      levels: [
        { after: '15m', targets: { recipients: true }, channels: ['inapp', 'email'] },
        { after: '15m', targets: { managers: true }, channels: ['inapp', 'email'] },
        { after: '30m', targets: { groups: ['on-duty'] }, channels: ['inapp', 'email'] },
      ],
    });
    assert.equal(policy.status, 201, policy.text);
    h.deps.hub.start();
    const base = await h.listen();
    const { frames: leadFrames } = await openInboxStream(t, base, tokens.lead);
    const eventId = await publish(h, key, {
      type: 'incident.opened',
      title: 'DB down',
      recipients: { users: ['owner'] },
      escalation_policy: 'to-the-desk',
      actions: [{ id: 'acknowledge', label: 'On it' }],
    });
    await routeAll(h);

    clock.advance(30 * MINUTE);
    assert.equal(await fireTimers(h), 2, 'the owner, then the manager');
    assert.deepEqual((await items(h, tokens.lead)).body.items, [], 'the queue is the last tier');
    clock.advance(30 * MINUTE);
    assert.equal(await fireTimers(h), 1);

    // One item in the queue, shown to every member, live too.
    const [item, ...others] = (await items(h, tokens.sre)).body.items;
    assert.deepEqual(others, []);
    assert.equal(item.event_id, eventId);
    assert.equal(item.state, 'open');
    assert.equal(item.title, 'Escalated: DB down');
    assert.equal(item.taken_by, null);
    assert.deepEqual(
      (await items(h, tokens.lead)).body.items.map((i: { id: string }) => i.id),
      [item.id],
    );
    await waitFor(() =>
      leadFrames.find((f) => f.event === 'queue.updated' && JSON.parse(f.data).id === item.id),
    );

    // Nobody in the queue got a notification or a message of their own from that level.
    const event = await eventOf(h, eventId);
    assert.deepEqual(event.notifications.map((n: { user_id: string }) => n.user_id).sort(), [
      'boss',
      'owner',
    ]);
    assert.deepEqual(await sends(h, eventId), ['boss:email', 'owner:email']);
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, tokens.lead)).body.items.length, 0);
    const step = event.escalation.steps.at(-1);
    assert.deepEqual(
      [step.level, step.notified, step.queues],
      [2, [], [{ group_id: 'on-duty', item_id: item.id }]],
    );
    const audit = await h.api('GET', '/v1/audit?action=escalation.level_fired');
    assert.deepEqual(
      audit.body.items
        .map((a: { data: { queues: unknown } }) => a.data.queues)
        .filter((q: unknown[]) => q.length > 0),
      [[{ group_id: 'on-duty', item_id: item.id }]],
    );

    const taken = await h.api('POST', `/v1/me/queues/on-duty/items/${item.id}/take`, undefined, tokens.sre);
    assert.equal(taken.status, 200, taken.text);
    assert.deepEqual((await items(h, tokens.lead)).body.items[0].taken_by, {
      id: 'sre-1',
      name: 'User sre-1',
    });

    // The owner acknowledges: the event is answered, so its queue item is done, handled by the owner.
    const ownerToken = await userToken(h, 'owner');
    const mine = event.notifications.find((n: { user_id: string }) => n.user_id === 'owner');
    const acked = await h.api('POST', `/v1/me/notifications/${mine.id}/actions/acknowledge`, {}, ownerToken);
    assert.equal(acked.status, 200, acked.text);
    const [done] = (await items(h, tokens.lead)).body.items;
    assert.equal(done.state, 'done');
    assert.deepEqual(done.taken_by, { id: 'owner', name: 'User owner' });
    await waitFor(() =>
      leadFrames.find((f) => f.event === 'queue.updated' && JSON.parse(f.data).state === 'done'),
    );
    assert.equal((await eventOf(h, eventId)).resolution, 'responded');
  });
}
