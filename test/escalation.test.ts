import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import type { Engine } from '../src/db/engine.ts';
import { stopEscalation } from '../src/escalation/stop.ts';
import {
  type CreatedSource,
  createGroup,
  createSource,
  createUser,
  publishEvent,
  userToken,
} from './factories.ts';
import { ENGINES, openTestStore, routeAll, startHerald, type TestHerald } from './helpers.ts';

const START = Date.parse('2026-01-01T00:00:00Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

async function setup(t: TestContext, engine: Engine) {
  const clock = new ManualClock(START);
  const h = await startHerald(t, engine, { workers: false, clock });
  const source = await createSource(h);
  return { h, clock, source };
}

function publish(h: TestHerald, source: CreatedSource, fields: Record<string, unknown>) {
  return publishEvent(h, source.api_key, { type: 'incident.opened', title: 'DB down', ...fields });
}

function at(clock: ManualClock, ms: number) {
  clock.advance(ms - clock.now());
}

async function fire(h: TestHerald) {
  let total = 0;
  for (let n = await h.workers.timers.runOnce(); n > 0; n = await h.workers.timers.runOnce()) total += n;
  return total;
}

async function escalationOf(h: TestHerald, eventId: string) {
  const res = await h.api('GET', `/v1/events/${eventId}`);
  assert.equal(res.status, 200, res.text);
  return res.body.escalation;
}

async function notified(h: TestHerald, eventId: string) {
  const rows = await h.store.db
    .selectFrom('notifications')
    .select(['user_id', 'title'])
    .where('event_id', '=', eventId)
    .orderBy('user_id')
    .execute();
  return rows;
}

/** owner (managed by boss) and a shared on-call group. */
async function org(h: TestHerald) {
  const boss = await createUser(h, { id: 'boss' });
  const owner = await createUser(h, { id: 'owner', manager: boss.id });
  const oncall = await createUser(h, { id: 'oncall' });
  await createGroup(h, 'shared', [oncall.id]);
  return { boss, owner, oncall };
}

/**
 * The org, and approvals for the owner by email with reminders a day and two hours before the deadline, then
 * the policy `late`: the owner's manager ten minutes after it.
 */
async function approvals(h: TestHerald) {
  await org(h);
  await h.api('PUT', '/v1/escalation-policies/late', {
    levels: [{ after: '10m', targets: { managers: true }, channels: ['inapp'] }],
  });
  await h.api('PUT', '/v1/rules/approvals', {
    match: { types: ['approval.*'] },
    recipients: { users: ['owner'] },
    channels: ['email'],
    reminders: ['-1d', '-2h'],
    escalation_policy: 'late',
  });
}

/** What {@link approvals} does for an event, step by step: [kind, who was notified]. */
const APPROVAL_STEPS = [
  ['reminder', ['owner']],
  ['reminder', ['owner']],
  ['overdue', ['owner']],
  ['level', ['boss']],
];

function stepsOf(escalation: { steps: { kind: string; notified: string[] }[] }) {
  return escalation.steps.map((s) => [s.kind, s.notified]);
}

const POLICY = {
  name: 'Critical',
  levels: [
    { after: '15m', targets: { recipients: true }, channels: ['inapp', 'email'] },
    { after: '15m', targets: { managers: true }, channels: ['inapp', 'sms'] },
    { after: '30m', targets: { groups: ['shared'] }, channels: ['inapp'] },
  ],
};

for (const engine of ENGINES) {
  test(`[${engine}] escalation policies: create, read, list, replace, delete, validation`, async (t) => {
    const { h } = await setup(t, engine);
    await org(h);
    const created = await h.api('PUT', '/v1/escalation-policies/critical', POLICY);
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.repeat, 0);
    assert.deepEqual(created.body.levels, POLICY.levels);
    const replaced = await h.api('PUT', '/v1/escalation-policies/critical', { ...POLICY, repeat: 2 });
    assert.equal(replaced.status, 200);
    assert.equal((await h.api('GET', '/v1/escalation-policies/critical')).body.repeat, 2);
    assert.deepEqual(
      (await h.api('GET', '/v1/escalation-policies')).body.items.map((p: { id: string }) => p.id),
      ['critical'],
    );

    const unknown = await h.api('PUT', '/v1/escalation-policies/x', {
      levels: [{ after: '5m', targets: { users: ['ghost'], groups: ['nope'] }, channels: ['inapp'] }],
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, 'unknown_reference');
    assert.deepEqual(unknown.body.unknown.users, ['ghost']);
    for (const bad of [
      { levels: [] },
      { levels: [{ after: '5 minutes', targets: { recipients: true }, channels: ['inapp'] }] },
      { levels: [{ after: '5m', targets: {}, channels: ['inapp'] }] },
      { levels: [{ after: '5m', targets: { recipients: true }, channels: ['pager'] }] },
      { levels: [{ after: '5m', targets: { recipients: true }, channels: ['inapp'] }], repeat: 11 },
    ]) {
      const res = await h.api('PUT', '/v1/escalation-policies/bad', bad);
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.equal(res.body.code, 'validation_failed');
    }
    const rule = await h.api('PUT', '/v1/rules/r', {
      match: { types: ['incident.*'] },
      recipients: { users: ['owner'] },
      channels: ['inapp'],
      escalation_policy: 'missing',
    });
    assert.equal(rule.status, 400);
    assert.equal(rule.body.code, 'unknown_reference');

    assert.equal((await h.api('DELETE', '/v1/escalation-policies/critical')).status, 204);
    assert.equal((await h.api('GET', '/v1/escalation-policies/critical')).status, 404);
  });

  test(`[${engine}] an unanswered critical event escalates owner → manager → shared group; frozen policy`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await org(h);
    assert.equal((await h.api('PUT', '/v1/escalation-policies/critical', POLICY)).status, 201);
    const rule = await h.api('PUT', '/v1/rules/critical', {
      match: { types: ['incident.*'] },
      recipients: { users: ['owner'] },
      channels: ['inapp'],
      escalation_policy: 'critical',
    });
    assert.equal(rule.status, 201, rule.text);
    assert.equal(rule.body.escalation_policy, 'critical');
    const id = await publish(h, source, { severity: 'critical' });
    await routeAll(h);
    assert.deepEqual(
      (await notified(h, id)).map((n) => n.user_id),
      ['owner'],
    );
    // Editing the policy now does not change the running escalation.
    await h.api('PUT', '/v1/escalation-policies/critical', {
      levels: [{ after: '1m', targets: { users: ['oncall'] }, channels: ['inapp'] }],
    });
    let escalation = await escalationOf(h, id);
    assert.equal(escalation.status, 'active');
    assert.equal(escalation.policy.levels.length, 3);
    assert.deepEqual(escalation.steps, []);

    clock.advance(14 * MINUTE);
    assert.equal(await fire(h), 0, 'not due yet');
    clock.advance(MINUTE);
    assert.equal(await fire(h), 1);
    escalation = await escalationOf(h, id);
    assert.deepEqual(
      escalation.steps.map((s: { level: number; notified: string[] }) => [s.level, s.notified]),
      [[0, ['owner']]],
    );
    const email = await h.store.db
      .selectFrom('deliveries')
      .select(['channel', 'user_id'])
      .where('event_id', '=', id)
      .where('user_id', '=', 'owner')
      .execute();
    assert.deepEqual(
      email.map((d) => d.channel),
      ['email'],
    );

    clock.advance(15 * MINUTE);
    assert.equal(await fire(h), 1);
    assert.deepEqual(
      (await notified(h, id)).map((n) => [n.user_id, n.title]),
      [
        ['boss', 'Escalated: DB down'],
        ['owner', 'Escalated: DB down'],
      ],
    );
    clock.advance(30 * MINUTE);
    assert.equal(await fire(h), 1);
    escalation = await escalationOf(h, id);
    assert.deepEqual(
      escalation.steps.map((s: { level: number; notified: string[] }) => [s.level, s.notified]),
      [
        [0, ['owner']],
        [1, ['boss']],
        [2, ['oncall']],
      ],
    );
    assert.equal(escalation.status, 'exhausted');
    const audit = await h.api('GET', '/v1/audit?action=escalation.level_fired');
    assert.equal(audit.status, 200, audit.text);
    assert.equal(audit.body.items.length, 3);
    clock.advance(HOUR);
    assert.equal(await fire(h), 0);
  });

  test(`[${engine}] a level naming a queue brings the event's one item back each round; resolving the event closes it`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await org(h);
    await createUser(h, { id: 'desk-2' });
    const desk = await h.api('PUT', '/v1/groups/desk', {
      name: 'Desk',
      members: ['oncall', 'desk-2'],
      queue: true,
    });
    assert.equal(desk.status, 201, desk.text);
    // A queue and an ordinary group in one level: the queue gets its item, the group's members a notification.
    const policy = await h.api('PUT', '/v1/escalation-policies/desk', {
      levels: [{ after: '10m', targets: { groups: ['desk', 'shared'] }, channels: ['inapp', 'email'] }],
      repeat: 1,
    });
    assert.equal(policy.status, 201, policy.text);
    const id = await publish(h, source, {
      recipients: { users: ['owner'], groups: ['desk'] },
      escalation_policy: 'desk',
    });
    await routeAll(h);
    const token = await userToken(h, 'desk-2');
    const queue = async () => {
      const res = await h.api('GET', '/v1/me/queues/desk/items', undefined, token);
      assert.equal(res.status, 200, res.text);
      return res.body.items;
    };
    const [routed] = await queue();
    const act = (action: string) =>
      h.api('POST', `/v1/me/queues/desk/items/${routed.id}/${action}`, undefined, token);
    assert.equal((await act('done')).status, 200, 'marked done, but nobody answered the event');

    clock.advance(10 * MINUTE);
    assert.equal(await fire(h), 1);
    let items = await queue();
    assert.deepEqual(
      items.map((i: { id: string; state: string; title: string; taken_by: unknown }) => [
        i.id,
        i.state,
        i.title,
        i.taken_by,
      ]),
      [[routed.id, 'open', 'Escalated: DB down', null]],
    );
    assert.equal((await act('take')).status, 200);
    clock.advance(10 * MINUTE);
    assert.equal(await fire(h), 1, 'the second round');
    items = await queue();
    assert.deepEqual(
      items.map((i: { id: string; state: string; taken_by: { id: string } }) => [
        i.id,
        i.state,
        i.taken_by.id,
      ]),
      [[routed.id, 'taken', 'desk-2']],
      'still held by the member who took it',
    );
    const escalation = await escalationOf(h, id);
    assert.deepEqual(
      escalation.steps.map((s: { round: number; notified: string[]; queues: unknown }) => [
        s.round,
        s.notified,
        s.queues,
      ]),
      [
        [0, ['oncall'], [{ group_id: 'desk', item_id: routed.id }]],
        [1, ['oncall'], [{ group_id: 'desk', item_id: routed.id }]],
      ],
    );
    assert.deepEqual(
      (await notified(h, id)).map((n) => n.user_id),
      ['oncall', 'owner'],
      'desk-2 is reached through the queue only',
    );

    const resolved = await h.api('POST', `/v1/events/${id}/resolve`, undefined, source.api_key);
    assert.equal(resolved.status, 200, resolved.text);
    assert.deepEqual(
      (await queue()).map((i: { state: string }) => i.state),
      ['done'],
    );
  });

  test(`[${engine}] stopEscalation cancels what is pending and records why`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await org(h);
    await h.api('PUT', '/v1/escalation-policies/critical', { ...POLICY, repeat: 3 });
    const id = await publish(h, source, {
      recipients: { users: ['owner'] },
      escalation_policy: 'critical',
      due_at: new Date(START + 2 * HOUR).toISOString(),
      reminders: ['-1h'],
    });
    await routeAll(h);
    const cancelled = await h.store.db
      .transaction()
      .execute((trx) => stopEscalation(trx, id, clock.now(), 'acknowledged'));
    assert.equal(cancelled, 3, 'reminder, deadline, first level');
    const escalation = await escalationOf(h, id);
    assert.equal(escalation.status, 'stopped');
    assert.equal(escalation.stopped_reason, 'acknowledged');
    clock.advance(10 * HOUR);
    assert.equal(await fire(h), 0);
    assert.equal(
      await h.store.db.transaction().execute((trx) => stopEscalation(trx, id, clock.now(), 'again')),
      0,
    );
    const audit = await h.api('GET', '/v1/audit?action=escalation.stopped');
    assert.equal(audit.body.items.length, 1);
  });

  test(`[${engine}] reminders before a deadline, the overdue notice at it, then the policy`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await approvals(h);
    const due = START + 2 * 86_400_000;
    const id = await publish(h, source, {
      type: 'approval.requested',
      title: 'Approve PO 7',
      due_at: new Date(due).toISOString(),
    });
    await routeAll(h);
    at(clock, due - 86_400_000 - 1);
    assert.equal(await fire(h), 0);
    clock.advance(1);
    assert.equal(await fire(h), 1);
    const [reminded] = await notified(h, id);
    assert.equal(reminded!.title, `Reminder: Approve PO 7 due at ${new Date(due).toISOString()}`);
    // The reminder went out on the channel the notification used.
    const deliveries = await h.store.db
      .selectFrom('deliveries')
      .select(['channel', 'msg_id', 'status'])
      .where('event_id', '=', id)
      .execute();
    assert.deepEqual(
      deliveries.map((d) => d.channel),
      ['email'],
    );
    at(clock, due - 2 * HOUR);
    assert.equal(await fire(h), 1);
    at(clock, due);
    assert.equal(await fire(h), 1);
    assert.match((await notified(h, id))[0]!.title, /^Overdue: Approve PO 7/);
    clock.advance(10 * MINUTE);
    assert.equal(await fire(h), 1);
    const escalation = await escalationOf(h, id);
    assert.deepEqual(stepsOf(escalation), APPROVAL_STEPS);
    assert.equal(escalation.status, 'exhausted');
  });

  test(`[${engine}] steps that all came due while no worker ran fire together, in order, for each event`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await approvals(h);
    const due = START + 2 * 86_400_000;
    const ids: string[] = [];
    for (const title of ['Approve PO 8', 'Approve PO 9']) {
      ids.push(
        await publish(h, source, { type: 'approval.requested', title, due_at: new Date(due).toISOString() }),
      );
    }
    await routeAll(h);
    at(clock, due + HOUR);
    assert.equal(await fire(h), 8, 'two reminders, the overdue notice and the level, for each event');
    for (const id of ids) {
      const escalation = await escalationOf(h, id);
      assert.deepEqual(stepsOf(escalation), APPROVAL_STEPS);
      assert.equal(escalation.status, 'exhausted', 'only once the last step fired');
      const titles = (await notified(h, id)).map((n) => [n.user_id, n.title.replace(/ \(.*/, '')]);
      const title = id === ids[0] ? 'Approve PO 8' : 'Approve PO 9';
      assert.deepEqual(titles, [
        ['boss', `Escalated: ${title}`],
        ['owner', `Overdue: ${title}`],
      ]);
    }
    // No dispatcher ran meanwhile: the owner's one email, still pending, goes out once with the latest title.
    const emails = await h.store.db
      .selectFrom('deliveries')
      .select('status')
      .where('event_id', '=', ids[0]!)
      .where('channel', '=', 'email')
      .execute();
    assert.equal(emails.length, 1);
    assert.equal(emails[0]!.status, 'pending');
  });

  test(`[${engine}] aging: an event without a deadline escalates after hours without an answer`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    await org(h);
    await h.api('PUT', '/v1/escalation-policies/aging', {
      levels: [{ after: '1m', targets: { groups: ['shared'] }, channels: ['inapp'] }],
      repeat: 1,
    });
    const id = await publish(h, source, {
      recipients: { users: ['owner'] },
      escalation_policy: 'aging',
      aging: '4h',
    });
    await routeAll(h);
    clock.advance(4 * HOUR);
    assert.equal(await fire(h), 0);
    clock.advance(MINUTE);
    assert.equal(await fire(h), 1);
    clock.advance(MINUTE);
    assert.equal(await fire(h), 1, 'repeated once');
    const escalation = await escalationOf(h, id);
    assert.deepEqual(
      escalation.steps.map((s: { round: number; notified: string[] }) => [s.round, s.notified]),
      [
        [0, ['oncall']],
        [1, ['oncall']],
      ],
    );
    assert.equal(escalation.status, 'exhausted');
  });

  test(`[${engine}] timers survive a restart and fire late, once; overdue timers are reported`, async (t) => {
    const clock = new ManualClock(START);
    const store = await openTestStore(t, engine);
    const first = await startHerald(t, engine, { workers: false, clock, store });
    const source = await createSource(first);
    await org(first);
    await first.api('PUT', '/v1/escalation-policies/p', {
      levels: [{ after: '5m', targets: { managers: true }, channels: ['inapp'] }],
    });
    const id = await publish(first, source, { recipients: { users: ['owner'] }, escalation_policy: 'p' });
    await routeAll(first);
    await first.close();

    clock.advance(10 * MINUTE);
    const second = await startHerald(t, engine, { workers: false, clock, store });
    const overdue = await second.api('GET', '/v1/timers/overdue');
    assert.equal(overdue.status, 200, overdue.text);
    assert.equal(overdue.body.count, 1);
    assert.equal(overdue.body.items[0].late_ms, 5 * MINUTE);
    assert.equal(await second.workers.timers.checkOverdue(), 1);
    assert.equal(await fire(second), 1);
    assert.equal(await fire(second), 0);
    assert.deepEqual(
      (await notified(second, id)).map((n) => n.user_id),
      ['boss', 'owner'],
    );
    assert.equal((await second.api('GET', '/v1/timers/overdue')).body.count, 0);
  });

  if (engine === 'postgres') {
    test('[postgres] two nodes: each escalation timer fires once', async (t) => {
      const clock = new ManualClock(START);
      const store = await openTestStore(t, engine);
      const a = await startHerald(t, engine, { workers: false, clock, store });
      const b = await startHerald(t, engine, { workers: false, clock, store });
      const source = await createSource(a);
      await org(a);
      await a.api('PUT', '/v1/escalation-policies/p', {
        levels: [{ after: '1m', targets: { managers: true }, channels: ['inapp'] }],
      });
      for (let i = 0; i < 20; i++) {
        await publish(a, source, { recipients: { users: ['owner'] }, escalation_policy: 'p' });
      }
      await routeAll(a);
      clock.advance(MINUTE);
      const fired = await Promise.all([fire(a), fire(b), fire(a), fire(b)]);
      assert.equal(
        fired.reduce((x, y) => x + y, 0),
        20,
      );
    });
  }
}
