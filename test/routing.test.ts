import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { createGroup, createSource } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { eventOf, notified, people, publish, routeAll, rule, sends } from './routing.fixtures.ts';

async function setUp(t: Parameters<typeof startHerald>[0], engine: (typeof ENGINES)[number]) {
  const h = await startHerald(t, engine, { workers: false, clock: new ManualClock() });
  const source = await createSource(h, { id: 'erp' });
  return { h, key: source.api_key };
}

/** Publishes events and routes them in one batch; returns their ids in order. */
async function routeBatch(h: TestHerald, key: string, events: Record<string, unknown>[]): Promise<string[]> {
  const ids = [];
  for (const event of events) ids.push(await publish(h, key, event));
  await routeAll(h);
  return ids;
}

for (const engine of ENGINES) {
  test(`[${engine}] an approval reaches the approver named by email in the event, and their manager`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(
      h,
      { id: 'mark' },
      { id: 'anna', email: 'anna@corp.example', manager: 'mark' },
      { id: 'other' },
    );
    await rule(h, 'po-approvals', {
      match: { types: ['purchase_order.approval_requested'] },
      recipients: { from_data: ['data.approver'], managers_of: ['data.approver'] },
      channels: ['inapp', 'email'],
    });
    const [id] = await routeBatch(h, key, [
      {
        type: 'purchase_order.approval_requested',
        title: 'PO 4711',
        data: { approver: 'Anna@Corp.example' },
      },
    ]);
    assert.deepEqual(await notified(h, id!), { anna: ['email', 'inapp'], mark: ['email', 'inapp'] });
    const routing = (await eventOf(h, id!)).routing;
    const via = Object.fromEntries(
      routing.recipients.map((r: { user_id: string; via: string[] }) => [r.user_id, r.via]),
    );
    assert.deepEqual(via, {
      anna: ['rule:po-approvals:data.approver'],
      mark: ['rule:po-approvals:manager_of:data.approver'],
    });
    assert.deepEqual(routing.rules_matched, ['po-approvals']);
  });

  test(`[${engine}] a shipment exception reaches the warehouse people of the event's site only`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(
      h,
      { id: 'w-ham', roles: ['warehouse'], attributes: { location: 'hamburg' } },
      { id: 'w-ham-lead', roles: ['warehouse', 'lead'], attributes: { location: ['hamburg', 'kiel'] } },
      { id: 'w-muc', roles: ['warehouse'], attributes: { location: 'munich' } },
      { id: 'f-ham', roles: ['finance'], attributes: { location: 'hamburg' } },
    );
    await rule(h, 'shipment-exceptions', {
      match: { types: ['shipment.exception'] },
      recipients: { segments: [{ roles: ['warehouse'], attributes: { location: 'data.site' } }] },
    });
    // One batch: the segment is read once for all sites and picked apart per event.
    const [hamburg, munich, kiel, nowhere, unsited] = await routeBatch(h, key, [
      { type: 'shipment.exception', data: { site: 'hamburg' } },
      { type: 'shipment.exception', data: { site: 'munich' } },
      { type: 'shipment.exception', data: { site: 'kiel' } },
      { type: 'shipment.exception', data: { site: 'paris' } },
      { type: 'shipment.exception', data: {} },
    ]);
    assert.deepEqual(Object.keys(await notified(h, hamburg!)), ['w-ham', 'w-ham-lead']);
    assert.deepEqual(Object.keys(await notified(h, munich!)), ['w-muc']);
    assert.deepEqual(Object.keys(await notified(h, kiel!)), ['w-ham-lead']);
    assert.deepEqual(await notified(h, nowhere!), {});
    assert.deepEqual((await eventOf(h, nowhere!)).routing.unresolved, [
      {
        kind: 'segment',
        ref: 'role in (warehouse) and location in (paris)',
        via: 'rule:shipment-exceptions:segment:0',
        reason: 'nobody in the directory fits this segment',
      },
    ]);
    assert.deepEqual((await eventOf(h, unsited!)).routing.unresolved, [
      {
        kind: 'segment',
        ref: 'attributes.location: data.site',
        via: 'rule:shipment-exceptions:segment:0',
        reason: 'the event has no value at this path',
      },
    ]);
  });

  test(`[${engine}] an integration failure reaches the on-duty group with its nested groups, by SMS when critical`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(h, { id: 'sre-1' }, { id: 'sre-2' }, { id: 'dba-1' }, { id: 'lead' });
    await createGroup(h, 'sre', ['sre-1', 'sre-2']);
    await createGroup(h, 'dba', ['dba-1']);
    const onDuty = await h.api('PUT', '/v1/groups/on-duty', {
      name: 'On duty',
      members: ['lead'],
      groups: ['sre', 'dba'],
    });
    assert.equal(onDuty.status, 201, onDuty.text);
    await rule(h, 'integrations', {
      match: { types: ['integration.failed'] },
      recipients: { groups: ['on-duty'] },
      channels: ['inapp', 'email'],
      channels_by_severity: { critical: ['inapp', 'sms'] },
    });
    const [warning, critical] = await routeBatch(h, key, [
      { type: 'integration.failed', severity: 'warning', title: 'SAP sync failed' },
      { type: 'integration.failed', severity: 'critical', title: 'ERP down' },
    ]);
    assert.deepEqual(await sends(h, warning!), ['dba-1:email', 'lead:email', 'sre-1:email', 'sre-2:email']);
    assert.deepEqual(await sends(h, critical!), ['dba-1:sms', 'lead:sms', 'sre-1:sms', 'sre-2:sms']);
    const via = (await eventOf(h, critical!)).routing.recipients.find(
      (r: { user_id: string }) => r.user_id === 'sre-1',
    ).via;
    assert.deepEqual(via, ['rule:integrations:group:on-duty']);
  });

  test(`[${engine}] a matching rule stops the rules after it unless it continues; explicit recipients always count`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(h, { id: 'first' }, { id: 'second' }, { id: 'third' }, { id: 'named' });
    await rule(h, 'a-first', { position: 1, match: { types: ['case.*'] }, recipients: { users: ['first'] } });
    await rule(h, 'b-second', {
      position: 2,
      match: { types: ['case.*'] },
      recipients: { users: ['second'] },
    });
    await rule(h, 'c-third', { position: 3, match: { types: ['*'] }, recipients: { users: ['third'] } });
    const [stopped] = await routeBatch(h, key, [{ type: 'case.opened', recipients: { users: ['named'] } }]);
    assert.deepEqual(Object.keys(await notified(h, stopped!)), ['first', 'named']);
    const routing = (await eventOf(h, stopped!)).routing;
    assert.deepEqual(routing.rules_matched, ['a-first']);
    assert.equal(routing.stopped_by, 'a-first');
    assert.equal(routing.rules_not_tried, 2);

    await rule(h, 'a-first', {
      position: 1,
      continue: true,
      match: { types: ['case.*'] },
      recipients: { users: ['first'] },
    });
    const [continued] = await routeBatch(h, key, [{ type: 'case.opened' }]);
    assert.deepEqual(Object.keys(await notified(h, continued!)), ['first', 'second']);
    const again = (await eventOf(h, continued!)).routing;
    assert.deepEqual(again.rules_matched, ['a-first', 'b-second']);
    assert.equal(again.stopped_by, 'b-second');
  });

  test(`[${engine}] conditions: true matches, false skips, and one that throws skips its rule while routing goes on`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(h, { id: 'cfo' }, { id: 'clerk' }, { id: 'fallback' });
    await rule(h, 'big', {
      position: 1,
      match: { types: ['invoice.*'], condition: 'data.amount > 10000' },
      recipients: { users: ['cfo'] },
    });
    await rule(h, 'coded', {
      position: 2,
      match: { types: ['invoice.*'], condition: '$lowercase(data.code) = "urgent"' },
      recipients: { users: ['clerk'] },
    });
    await rule(h, 'rest', {
      position: 3,
      match: { types: ['invoice.*'] },
      recipients: { users: ['fallback'] },
    });
    const [large, small, numeric] = await routeBatch(h, key, [
      { type: 'invoice.failed', data: { amount: 25000, code: 'x' } },
      { type: 'invoice.failed', data: { amount: 50, code: 'URGENT' } },
      { type: 'invoice.failed', data: { amount: 50, code: 42 } },
    ]);
    assert.deepEqual(Object.keys(await notified(h, large!)), ['cfo']);
    assert.deepEqual(Object.keys(await notified(h, small!)), ['clerk']);
    assert.deepEqual(Object.keys(await notified(h, numeric!)), ['fallback']);

    const routing = (await eventOf(h, numeric!)).routing;
    assert.deepEqual(routing.rules_matched, ['rest']);
    assert.equal(routing.rules_skipped.length, 2);
    assert.deepEqual(routing.rules_skipped[0], { rule: 'big', reason: 'condition_false' });
    assert.equal(routing.rules_skipped[1].rule, 'coded');
    assert.equal(routing.rules_skipped[1].reason, 'condition_error');
    assert.match(routing.rules_skipped[1].error, /lowercase/);
  });

  test(`[${engine}] a condition that runs out of time is skipped for the rest of its batch, and routing goes on`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(h, { id: 'never' }, { id: 'always' });
    await rule(h, 'endless', {
      position: 1,
      match: { types: ['job.*'], condition: '( $loop := function($i) { $loop($i + 1) }; $loop(0) )' },
      recipients: { users: ['never'] },
    });
    await rule(h, 'rest', { position: 2, match: { types: ['job.*'] }, recipients: { users: ['always'] } });
    const ids = await routeBatch(h, key, [
      { type: 'job.failed' },
      { type: 'job.failed' },
      { type: 'job.failed' },
    ]);
    const errors = [];
    for (const id of ids) {
      assert.deepEqual(Object.keys(await notified(h, id)), ['always']);
      const [skipped] = (await eventOf(h, id)).routing.rules_skipped;
      assert.equal(skipped.reason, 'condition_error');
      errors.push(skipped.error);
    }
    assert.match(errors[0], /timeout|too long|infinite/i);
    assert.match(errors[1], /^not evaluated: on an earlier event of this batch/);
    assert.match(errors[2], /^not evaluated: on an earlier event of this batch/);
  });

  test(`[${engine}] rules match on subjects, sources and severities`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(h, { id: 'legal' });
    await rule(h, 'contracts', {
      match: {
        types: ['contract.*'],
        subjects: ['contract-7*'],
        sources: ['erp'],
        severities: ['warning', 'error'],
      },
      recipients: { users: ['legal'] },
    });
    const [hit, otherSubject, noSubject, info] = await routeBatch(h, key, [
      { type: 'contract.expiring', subject: 'contract-7001', severity: 'warning' },
      { type: 'contract.expiring', subject: 'contract-8001', severity: 'warning' },
      { type: 'contract.expiring', severity: 'warning' },
      { type: 'contract.expiring', subject: 'contract-7001' },
    ]);
    assert.deepEqual(Object.keys(await notified(h, hit!)), ['legal']);
    for (const [id, reason] of [
      [otherSubject, 'subject'],
      [noSubject, 'subject'],
      [info, 'severity'],
    ] as const) {
      assert.deepEqual(await notified(h, id!), {});
      assert.deepEqual((await eventOf(h, id!)).routing.rules_skipped, [{ rule: 'contracts', reason }]);
    }
  });

  test(`[${engine}] the manager of everyone a rule reaches, and managers that cannot be found are reported`, async (t) => {
    const { h, key } = await setUp(t, engine);
    await people(
      h,
      { id: 'boss' },
      { id: 'a', manager: 'boss' },
      { id: 'b', manager: 'ghost-manager' },
      { id: 'c' },
    );
    await createGroup(h, 'team', ['a', 'b', 'c']);
    await rule(h, 'escalations', {
      match: { types: ['case.escalated'] },
      recipients: { groups: ['team'], managers_of: ['recipients'] },
    });
    const [id] = await routeBatch(h, key, [{ type: 'case.escalated' }]);
    assert.deepEqual(Object.keys(await notified(h, id!)), ['a', 'b', 'boss', 'c']);
    const routing = (await eventOf(h, id!)).routing;
    const boss = routing.recipients.find((r: { user_id: string }) => r.user_id === 'boss');
    assert.deepEqual(boss.via, ['rule:escalations:manager_of:recipients']);
    const via = 'rule:escalations:manager_of:recipients';
    assert.deepEqual(
      [...routing.unresolved].sort((x: { ref: string }, y: { ref: string }) => (x.ref < y.ref ? -1 : 1)),
      [
        { kind: 'manager', ref: 'c', via, reason: 'has no manager in the directory' },
        {
          kind: 'manager',
          ref: 'ghost-manager',
          via,
          reason: 'is the manager of "b" but not in the directory',
        },
      ],
    );
  });
}
