import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { findEscalation } from '../src/escalation/escalations.repo.ts';
import { createSource, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { eventOf, explain, notified, people, publish, routeAll, rule, sends } from './routing.fixtures.ts';

async function follow(h: TestHerald, token: string, body: Record<string, unknown>) {
  const res = await h.api('POST', '/v1/me/subscriptions', body, token);
  assert.ok(res.status === 201 || res.status === 200, res.text);
  return res.body as { id: string; channels: string[] };
}

for (const engine of ENGINES) {
  test(`[${engine}] a user follows types, a source or a subject, lists and unfollows`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, clock: new ManualClock() });
    await createSource(h, { id: 'crm' });
    await people(h, { id: 'ann' }, { id: 'bob' });
    const ann = await userToken(h, 'ann');
    const bob = await userToken(h, 'bob');
    const created = await h.api(
      'POST',
      '/v1/me/subscriptions',
      { types: ['contract.*'], channels: ['email'] },
      ann,
    );
    assert.equal(created.status, 201, created.text);
    assert.match(created.body.id, /^sub_/);
    assert.deepEqual(created.body, {
      id: created.body.id,
      types: ['contract.*'],
      source: null,
      subject: null,
      channels: ['inapp', 'email'],
      created_at: '2026-01-01T00:00:00.000Z',
    });
    const again = await h.api(
      'POST',
      '/v1/me/subscriptions',
      { types: ['contract.*'], channels: ['email'] },
      ann,
    );
    assert.equal(again.status, 200, 'the same again is the same subscription');
    assert.equal(again.body.id, created.body.id);
    const source = await follow(h, ann, { source: 'crm' });
    const subject = await follow(h, ann, { subject: 'case-42' });
    const listed = (await h.api('GET', '/v1/me/subscriptions', undefined, ann)).body.subscriptions;
    assert.deepEqual(
      listed.map((s: { id: string }) => s.id),
      [created.body.id, source.id, subject.id],
    );
    assert.deepEqual((await h.api('GET', '/v1/me/subscriptions', undefined, bob)).body.subscriptions, []);
    assert.equal((await h.api('DELETE', `/v1/me/subscriptions/${source.id}`, undefined, bob)).status, 404);
    assert.equal((await h.api('DELETE', `/v1/me/subscriptions/${source.id}`, undefined, ann)).status, 204);
    assert.equal((await h.api('DELETE', `/v1/me/subscriptions/${source.id}`, undefined, ann)).status, 404);
    assert.equal((await h.api('GET', '/v1/me/subscriptions', undefined, ann)).body.subscriptions.length, 2);

    const bad: [Record<string, unknown>, number, string][] = [
      [{}, 400, 'validation_failed'],
      [{ channels: ['email'] }, 400, 'validation_failed'],
      [{ types: ['bad type'] }, 400, 'validation_failed'],
      [{ types: ['x.*'], channels: ['pager'] }, 400, 'validation_failed'],
      [{ source: 'ghost' }, 400, 'unknown_reference'],
    ];
    for (const [body, status, code] of bad) {
      const res = await h.api('POST', '/v1/me/subscriptions', body, ann);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.code, code);
    }
    assert.equal((await h.api('GET', '/v1/me/subscriptions', undefined, null)).status, 401);
    assert.equal((await h.api('GET', '/v1/me/subscriptions')).status, 403, 'the admin has no /me');
  });

  test(`[${engine}] following is a route of its own: by type, by source and by subject, shown as via subscription`, async (t) => {
    const h = await startHerald(t, engine, { workers: false, clock: new ManualClock() });
    const crm = await createSource(h, { id: 'crm' });
    const erp = await createSource(h, { id: 'erp' });
    await people(h, { id: 'types-fan' }, { id: 'crm-fan' }, { id: 'case-fan' }, { id: 'owner' });
    const byType = await follow(h, await userToken(h, 'types-fan'), {
      types: ['contract.*'],
      channels: ['email'],
    });
    const bySource = await follow(h, await userToken(h, 'crm-fan'), { source: 'crm', types: ['case.*'] });
    const bySubject = await follow(h, await userToken(h, 'case-fan'), { subject: 'case-42' });
    // A rule that stops: subscriptions are not rules and are not stopped by them.
    await rule(h, 'owner', { match: { types: ['*'] }, recipients: { users: ['owner'] } });

    const contract = await publish(h, erp.api_key, { type: 'contract.signed', subject: 'contract-1' });
    const crmCase = await publish(h, crm.api_key, { type: 'case.opened', subject: 'case-42' });
    const erpCase = await publish(h, erp.api_key, { type: 'case.opened', subject: 'case-42' });
    const other = await publish(h, erp.api_key, { type: 'case.opened', subject: 'case-7' });
    const crmInvoice = await publish(h, crm.api_key, { type: 'invoice.paid' });
    await routeAll(h);

    assert.deepEqual(await notified(h, contract), { owner: ['inapp'], 'types-fan': ['email', 'inapp'] });
    assert.deepEqual(await sends(h, contract), ['types-fan:email']);
    assert.deepEqual(Object.keys(await notified(h, crmCase)), ['case-fan', 'crm-fan', 'owner']);
    assert.deepEqual(Object.keys(await notified(h, erpCase)), ['case-fan', 'owner']);
    assert.deepEqual(Object.keys(await notified(h, other)), ['owner']);
    assert.deepEqual(Object.keys(await notified(h, crmInvoice)), ['owner']);

    const routing = (await eventOf(h, crmCase)).routing;
    assert.deepEqual(routing.subscriptions_matched.sort(), [bySource.id, bySubject.id].sort());
    const via = Object.fromEntries(
      routing.recipients.map((r: { user_id: string; via: string[] }) => [r.user_id, r.via]),
    );
    assert.deepEqual(via['crm-fan'], [`subscription:${bySource.id}`]);
    assert.deepEqual(via['case-fan'], [`subscription:${bySubject.id}`]);

    const explained = await explain(h, { source: 'erp', type: 'contract.renewed' });
    assert.deepEqual(explained.subscriptions_matched, [byType.id]);
    const fan = explained.recipients.find((r: { user_id: string }) => r.user_id === 'types-fan');
    assert.deepEqual(fan, {
      user_id: 'types-fan',
      notified: true,
      channels: ['email', 'inapp'],
      via: [`subscription:${byType.id}`],
      channels_skipped: [],
    });
  });
  test(`[${engine}] following informs: a follower gets no actions, cannot respond, and is not counted or escalated as an owner`, async (t) => {
    const clock = new ManualClock();
    const h = await startHerald(t, engine, { workers: false, clock });
    const erp = await createSource(h, { id: 'erp' });
    await people(h, { id: 'alice' }, { id: 'carol' }, { id: 'fan' });
    const fan = await userToken(h, 'fan');
    const alice = await userToken(h, 'alice');
    await follow(h, fan, { types: ['*'] });
    const po = await publish(h, erp.api_key, {
      type: 'po.approval_requested',
      title: 'PO 4711',
      recipients: { users: ['alice', 'carol'] },
      actions: [{ id: 'approve', label: 'Approve' }],
      response_policy: 'all',
      due_at: new Date(clock.now() + 3_600_000).toISOString(),
      reminders: ['-30m'],
    });
    await routeAll(h);
    assert.deepEqual(Object.keys(await notified(h, po)), ['alice', 'carol', 'fan']);

    const inboxOf = async (token: string) =>
      (await h.api('GET', '/v1/me/notifications', undefined, token)).body.items[0];
    const followed = await inboxOf(fan);
    assert.equal(followed.title, 'PO 4711', 'the follower is informed');
    assert.deepEqual(followed.actions, []);
    assert.deepEqual(
      (await inboxOf(alice)).actions.map((a: { id: string }) => a.id),
      ['approve'],
    );
    const refused = await h.api('POST', `/v1/me/notifications/${followed.id}/actions/approve`, {}, fan);
    assert.equal(refused.status, 403, refused.text);
    assert.equal(refused.body.code, 'forbidden');

    // `all` means every addressed recipient: Alice's and Carol's responses close it, the follower's is not awaited.
    const own = await inboxOf(alice);
    assert.equal(
      (await h.api('POST', `/v1/me/notifications/${own.id}/actions/approve`, {}, alice)).status,
      200,
    );
    assert.equal((await eventOf(h, po)).resolution, null);
    const carol = await userToken(h, 'carol');
    const carols = await inboxOf(carol);
    assert.equal(
      (await h.api('POST', `/v1/me/notifications/${carols.id}/actions/approve`, {}, carol)).status,
      200,
    );
    assert.equal((await eventOf(h, po)).resolution, 'responded');
    const escalation = await findEscalation(h.deps.store.db, po);
    assert.deepEqual([...escalation!.plan.recipients].sort(), ['alice', 'carol'], 'reminders are for owners');
  });
}
