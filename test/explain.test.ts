import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { createGroup, createSource, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { eventOf, explain, people, publish, reasons, routeAll, rule } from './routing.fixtures.ts';

async function count(h: TestHerald, table: 'events' | 'notifications' | 'deliveries'): Promise<number> {
  const row = await h.store.db
    .selectFrom(table)
    .select((eb) => eb.fn.countAll().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** A directory and rules covering every way a rule can miss and a recipient can be left out. */
async function organisation(h: TestHerald): Promise<string> {
  const erp = await createSource(h, { id: 'erp' });
  await createSource(h, { id: 'crm' });
  await people(
    h,
    { id: 'mark' },
    { id: 'anna', email: 'anna@corp.example', manager: 'mark' },
    { id: 'w-ham', roles: ['warehouse'], attributes: { location: 'hamburg' } },
    { id: 'sre-1' },
  );
  await createGroup(h, 'sre', ['sre-1']);
  await h.api('PUT', '/v1/groups/on-duty', { name: 'On duty', members: [], groups: ['sre'] });
  await rule(h, 'crm-only', {
    position: 1,
    match: { types: ['*'], sources: ['crm'] },
    recipients: { users: ['mark'] },
  });
  await rule(h, 'critical-only', {
    position: 2,
    continue: true,
    match: { types: ['*'], severities: ['critical'] },
    recipients: { groups: ['on-duty'] },
  });
  await rule(h, 'contracts', {
    position: 3,
    match: { types: ['*'], subjects: ['contract-*'] },
    recipients: { users: ['mark'] },
  });
  await rule(h, 'big', {
    position: 4,
    match: { types: ['purchase_order.*'], condition: 'data.amount > 10000' },
    recipients: { users: ['mark'] },
  });
  await rule(h, 'broken', {
    position: 5,
    match: { types: ['purchase_order.*'], condition: '$lowercase(data.amount) = "x"' },
    recipients: { users: ['mark'] },
  });
  await rule(h, 'approvals', {
    position: 6,
    continue: true,
    match: { types: ['purchase_order.approval_requested'] },
    recipients: { from_data: ['data.approver', 'data.backup'], managers_of: ['data.approver'] },
    channels: ['inapp', 'email'],
  });
  await rule(h, 'shipments', {
    position: 7,
    match: { types: ['shipment.*', 'purchase_order.*'] },
    recipients: { segments: [{ roles: ['warehouse'], attributes: { location: 'data.site' } }] },
  });
  await rule(h, 'after-stop', { position: 8, match: { types: ['*'] }, recipients: { users: ['anna'] } });
  await rule(h, 'disabled', {
    position: 9,
    enabled: false,
    match: { types: ['*'] },
    recipients: { users: ['anna'] },
  });
  await rule(h, 'types', { position: 10, match: { types: ['invoice.*'] }, recipients: { users: ['anna'] } });
  return erp.api_key;
}

for (const engine of ENGINES) {
  test(`[${engine}] explain says for every rule whether it matched and why not, and for every recipient what they get`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, clock: new ManualClock() });
    await organisation(h);
    const anna = await userToken(h, 'anna');
    const off = [{ category: 'purchase_order.*', channel: 'email', enabled: false }];
    assert.equal((await h.api('PUT', '/v1/me/preferences', { preferences: off }, anna)).status, 200);

    const event = {
      source: 'erp',
      type: 'purchase_order.approval_requested',
      title: 'PO 4711 needs approval',
      data: { amount: 25, approver: 'ANNA@corp.example', site: 'hamburg' },
      recipients: { users: ['sre-1', 'nobody'] },
    };
    const result = await explain(h, event);
    assert.deepEqual(reasons(result), {
      'crm-only': 'source',
      'critical-only': 'severity',
      contracts: 'subject',
      big: 'condition_false',
      broken: 'condition_error',
      approvals: 'matched',
      shipments: 'matched',
      'after-stop': 'stopped',
      disabled: 'disabled',
      types: 'stopped',
    });
    const detail = Object.fromEntries(
      result.rules.map((r: { rule: string; detail: string }) => [r.rule, r.detail]),
    );
    assert.equal(detail['crm-only'], 'source "erp" is not one of "crm"');
    assert.equal(detail['critical-only'], 'severity "info" is not one of "critical"');
    assert.equal(detail.contracts, 'the event has no subject');
    assert.equal(detail.big, 'the condition is false for this event');
    assert.match(detail.broken, /^the condition failed, so the rule was skipped: .*lowercase/);
    assert.equal(detail['after-stop'], 'rule "shipments" matched before it and does not continue');

    const recipients = Object.fromEntries(result.recipients.map((r: { user_id: string }) => [r.user_id, r]));
    assert.deepEqual(Object.keys(recipients).sort(), ['anna', 'mark', 'sre-1', 'w-ham']);
    assert.deepEqual(recipients.anna, {
      user_id: 'anna',
      notified: true,
      channels: ['inapp'],
      via: ['rule:approvals:data.approver'],
      channels_skipped: [{ channel: 'email', reason: 'turned off in preferences' }],
    });
    assert.deepEqual(recipients.mark.channels, ['email', 'inapp']);
    assert.deepEqual(recipients.mark.via, ['rule:approvals:manager_of:data.approver']);
    assert.deepEqual(recipients['sre-1'].via, ['recipients']);
    assert.deepEqual(recipients['w-ham'].via, ['rule:shipments:segment:0']);
    assert.deepEqual(result.unresolved, [
      { kind: 'user', ref: 'nobody', via: 'recipients', reason: 'no such user in the directory' },
      {
        kind: 'data',
        ref: 'data.backup',
        via: 'rule:approvals',
        reason: 'the event has no value at this path',
      },
    ]);
    assert.equal(result.event.type, 'purchase_order.approval_requested');
    assert.equal(result.event.source, 'erp');

    assert.equal(await count(h, 'events'), 0, 'nothing is stored');
    assert.equal(await count(h, 'notifications'), 0);
    assert.equal(await count(h, 'deliveries'), 0);
  });

  test(`[${engine}] explain and GET /v1/events/{id} tell the same story for the same event`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, clock: new ManualClock() });
    const key = await organisation(h);
    const event = {
      type: 'purchase_order.approval_requested',
      severity: 'critical' as const,
      data: { amount: 20000, approver: 'anna' },
    };
    const explained = await explain(h, { ...event, source: 'erp' });
    const id = await publish(h, key, event);
    await routeAll(h);
    const routing = (await eventOf(h, id)).routing;

    const matched = explained.rules
      .filter((r: { matched: boolean }) => r.matched)
      .map((r: { rule: string }) => r.rule);
    assert.deepEqual(matched, ['critical-only', 'big']);
    assert.deepEqual(routing.rules_matched, matched);
    assert.equal(routing.stopped_by, 'big');
    assert.deepEqual(routing.rules_skipped, [
      { rule: 'crm-only', reason: 'source' },
      { rule: 'contracts', reason: 'subject' },
    ]);
    assert.equal(routing.rules_not_tried, 5);
    assert.deepEqual(routing.recipients.map((r: { user_id: string }) => r.user_id).sort(), ['mark', 'sre-1']);
    const who = (list: { user_id: string; channels: string[]; via: string[] }[]) =>
      list.map((r) => [r.user_id, r.channels, r.via]).sort();
    assert.deepEqual(who(routing.recipients), who(explained.recipients));
    assert.equal(routing.recipient_count, explained.recipient_count);
  });

  test(`[${engine}] explain refuses what a source could not publish, naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createSource(h, { id: 'erp' });
    const cases: [Record<string, unknown>, number, string][] = [
      [{ type: 'x.y' }, 400, 'validation_failed'],
      [{ source: 'erp', type: 'bad type' }, 400, 'validation_failed'],
      [{ source: 'erp', type: 'x.y', colour: 'red' }, 400, 'validation_failed'],
      [{ source: 'ghost', type: 'x.y' }, 400, 'unknown_reference'],
    ];
    for (const [body, status, code] of cases) {
      const res = await h.api('POST', '/v1/routing/explain', body);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.code, code);
    }
    const fields = (await h.api('POST', '/v1/routing/explain', { source: 'erp', type: 'x.y', colour: 1 }))
      .body.errors;
    assert.ok(
      fields.some((e: { field: string }) => e.field === 'body.colour'),
      JSON.stringify(fields),
    );
    const source = await createSource(h);
    assert.equal(
      (await h.api('POST', '/v1/routing/explain', { source: 'erp', type: 'x.y' }, null)).status,
      401,
    );
    assert.equal(
      (await h.api('POST', '/v1/routing/explain', { source: 'erp', type: 'x.y' }, source.api_key)).status,
      403,
    );
  });
}
