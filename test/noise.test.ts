import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import type { Engine } from '../src/db/engine.ts';
import type { EventRow } from '../src/db/tables.ts';
import { explainNoise, explainNoiseStep, loadExplainState } from '../src/noise/explain.ts';
import type { RuleNoise } from '../src/noise/options.ts';
import { explainEvent } from '../src/routing/explain.ts';
import { type CreatedSource, createSource, createUser, publishEvent, userToken } from './factories.ts';
import { ENGINES, openTestStore, routeAll, startHerald, type TestHerald, waitFor } from './helpers.ts';
import { openInboxStream } from './sse.ts';

const START = Date.parse('2026-01-01T00:00:00Z');
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

async function setup(t: TestContext, engine: Engine, start = START) {
  const clock = new ManualClock(start);
  const h = await startHerald(t, engine, { workers: false, clock });
  const source = await createSource(h);
  return { h, clock, source };
}

/** Publishes an event as `source`; returns its id. */
function publish(h: TestHerald, source: CreatedSource, fields: Record<string, unknown>) {
  return publishEvent(h, source.api_key, { type: 'integration.failed', title: 'Job failed', ...fields });
}

/** A rule sending `types` to `users` on `channels`, with noise options. */
async function rule(
  h: TestHerald,
  id: string,
  body: { types: string[]; users: string[]; channels?: string[] },
  noise: RuleNoise | null = null,
) {
  const res = await h.api('PUT', `/v1/rules/${id}`, {
    match: { types: body.types },
    recipients: { users: body.users },
    channels: body.channels ?? ['inapp'],
    ...(noise === null ? {} : { noise }),
  });
  assert.ok(res.status === 200 || res.status === 201, res.text);
  if (noise !== null) assert.deepEqual(res.body.noise, noise);
}

async function inbox(h: TestHerald, userId: string) {
  const rows = await h.store.db
    .selectFrom('notifications')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
  return rows.map((r) => ({ ...r, data: r.data === null ? null : JSON.parse(r.data) }));
}

async function deliveriesOf(h: TestHerald, userId: string) {
  return h.store.db
    .selectFrom('deliveries')
    .selectAll()
    .where('user_id', '=', userId)
    .orderBy('id')
    .execute();
}

async function noiseOf(h: TestHerald, eventId: string) {
  const res = await h.api('GET', `/v1/events/${eventId}`);
  assert.equal(res.status, 200, res.text);
  return res.body.routing.noise;
}

for (const engine of ENGINES) {
  test(`[${engine}] a repeat with the dedup key of an open notification updates it, live on the stream`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    h.deps.hub.start();
    const alice = await createUser(h, { email: 'alice@example.com' });
    await rule(h, 'jobs', { types: ['integration.*'], users: [alice.id], channels: ['inapp', 'email'] });
    const base = await h.listen();
    const stream = await openInboxStream(t, base, await userToken(h, alice.id));

    await publish(h, source, { title: 'ERP→CRM failed (1)', dedup_key: 'job-7', data: { attempt: 1 } });
    await routeAll(h);
    const created = await stream.next();
    assert.equal(created.event, 'notification');
    assert.equal(created.body.title, 'ERP→CRM failed (1)');

    clock.advance(MINUTE);
    const second = await publish(h, source, {
      title: 'ERP→CRM failed (2)',
      dedup_key: 'job-7',
      severity: 'error',
      data: { attempt: 2 },
    });
    await routeAll(h);
    const updated = await stream.next();
    assert.equal(updated.event, 'notification.updated');
    assert.equal(updated.body.id, created.body.id);
    assert.equal(updated.body.title, 'ERP→CRM failed (2)');
    assert.equal(updated.body.updated_at, new Date(START + MINUTE).toISOString());

    const [row, ...others] = await inbox(h, alice.id);
    assert.equal(others.length, 0);
    assert.equal(row!.occurrences, 2);
    assert.equal(row!.last_event_id, second);
    assert.equal(row!.severity, 'error');
    assert.deepEqual(row!.data, { attempt: 2 });
    // A repeat updates the inbox but sends no second email.
    assert.equal((await deliveriesOf(h, alice.id)).length, 1);
    assert.deepEqual((await noiseOf(h, second)).deduplicated_into, [
      { user_id: alice.id, notification_id: row!.id },
    ]);

    // Another source's key is another key; an archived notification is no longer open.
    const other = await createSource(h);
    await publish(h, other, { dedup_key: 'job-7' });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).length, 2);
    await h.store.db
      .updateTable('notifications')
      .set({ state: 'archived' })
      .where('id', '=', row!.id)
      .execute();
    await publish(h, source, { dedup_key: 'job-7' });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).length, 3);
  });

  test(`[${engine}] repeats within one routing batch fold into one notification`, async (t) => {
    const { h, source } = await setup(t, engine);
    const alice = await createUser(h);
    for (let i = 1; i <= 3; i++) {
      await publish(h, source, { title: `Failed ${i}`, dedup_key: 'k', recipients: { users: [alice.id] } });
    }
    await routeAll(h);
    const rows = await inbox(h, alice.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.occurrences, 3);
    assert.equal(rows[0]!.title, 'Failed 3');
  });

  test(`[${engine}] a group sends one notification per recipient listing its members when the wait ends`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    const bob = await createUser(h);
    await rule(
      h,
      'failures',
      { types: ['integration.failed'], users: [alice.id, bob.id], channels: ['inapp', 'email'] },
      { group: { by: ['data.job'], wait: '30s' } },
    );
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await publish(h, source, { title: `Run ${i} failed`, data: { job: 'ERP→CRM' } }));
      await routeAll(h);
      clock.advance(1_000);
    }
    const lone = await publish(h, source, { title: 'Payroll failed', data: { job: 'HR→Payroll' } });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).length, 0);
    const grouped = (await noiseOf(h, ids[1]!)).grouped;
    assert.equal(grouped.length, 2);
    assert.equal(grouped[0].until, new Date(START + 30_000).toISOString());

    clock.advance(24_000);
    assert.equal(await h.workers.timers.runOnce(), 0, 'not due yet');
    clock.advance(1_000);
    assert.equal(await h.workers.timers.runOnce(), 1, 'the ERP→CRM group');
    let rows = await inbox(h, alice.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.title, '5 × integration.failed: ERP→CRM');
    assert.equal(rows[0]!.occurrences, 5);
    assert.deepEqual(
      rows[0]!.data.members.map((m: { event_id: string }) => m.event_id),
      ids,
    );
    assert.equal((await inbox(h, bob.id))[0]!.title, '5 × integration.failed: ERP→CRM');
    assert.deepEqual(
      (await deliveriesOf(h, alice.id)).map((d) => [d.channel, d.notification_id]),
      [['email', rows[0]!.id]],
    );

    clock.advance(5_000);
    assert.equal(await h.workers.timers.runOnce(), 1);
    rows = await inbox(h, alice.id);
    assert.equal(rows[1]!.title, 'Payroll failed', 'a group of one keeps its title');
    assert.equal(rows[1]!.event_id, lone);

    // The group closed when it was sent: a later failure opens a new one.
    await publish(h, source, { data: { job: 'ERP→CRM' } });
    await routeAll(h);
    clock.advance(30_000);
    await h.workers.timers.runOnce();
    assert.equal((await inbox(h, alice.id)).length, 3);
  });

  test(`[${engine}] a group with an interval sends what arrived since, then closes when idle`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    await rule(
      h,
      'failures',
      { types: ['integration.failed'], users: [alice.id] },
      { group: { by: ['source', 'data.job'], wait: '30s', interval: '5m' } },
    );
    await publish(h, source, { data: { job: 'a' } });
    await routeAll(h);
    clock.advance(30_000);
    await h.workers.timers.runOnce();
    assert.equal((await inbox(h, alice.id)).length, 1);

    clock.advance(MINUTE);
    await publish(h, source, { data: { job: 'a' } });
    await publish(h, source, { data: { job: 'a' } });
    await routeAll(h);
    clock.advance(3 * MINUTE);
    assert.equal(await h.workers.timers.runOnce(), 0, 'the interval runs from the last send');
    clock.advance(MINUTE);
    assert.equal(await h.workers.timers.runOnce(), 1);
    const rows = await inbox(h, alice.id);
    assert.equal(rows.length, 2);
    assert.equal(rows[1]!.title, `2 × integration.failed: ${source.id} / a`);

    clock.advance(5 * MINUTE);
    assert.equal(await h.workers.timers.runOnce(), 1, 'an idle interval closes the group');
    const bucket = await h.store.db.selectFrom('noise_buckets').selectAll().executeTakeFirstOrThrow();
    assert.equal(bucket.open_key, null);
    assert.equal(await h.store.db.selectFrom('timers').select('id').executeTakeFirst(), undefined);
  });

  test(`[${engine}] a group open when the process stops is sent on time by the next process, once`, async (t) => {
    const store = await openTestStore(t, engine);
    const clock = new ManualClock(START);
    const first = await startHerald(t, engine, { workers: false, clock, store });
    const source = await createSource(first);
    const alice = await createUser(first);
    await rule(
      first,
      'g',
      { types: ['integration.failed'], users: [alice.id] },
      { group: { by: ['type'], wait: '1m' } },
    );
    await publish(first, source, {});
    await publish(first, source, {});
    await routeAll(first);
    await first.close();

    clock.advance(MINUTE);
    const second = await startHerald(t, engine, { workers: false, clock, store });
    const third = await startHerald(t, engine, { workers: false, clock, store });
    // Two nodes race for the timer: it fires exactly once.
    const fired = await Promise.all([second.workers.timers.runOnce(), third.workers.timers.runOnce()]);
    assert.equal(fired[0]! + fired[1]!, 1);
    const rows = await inbox(second, alice.id);
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.title, '2 × integration.failed');
  });

  test(`[${engine}] a started timer worker fires a due timer without being asked`, async (t) => {
    const clock = new ManualClock(START);
    const h = await startHerald(t, engine, { clock });
    const source = await createSource(h);
    const alice = await createUser(h);
    await rule(
      h,
      'g',
      { types: ['integration.failed'], users: [alice.id] },
      { group: { by: ['type'], wait: '1s' } },
    );
    await publish(h, source, {});
    await waitFor(
      async () => (await h.store.db.selectFrom('noise_held').select('event_id').execute()).length === 1,
    );
    clock.advance(1_000);
    await waitFor(async () => (await inbox(h, alice.id)).length === 1);
  });

  test(`[${engine}] throttling lets max through per window and sums up the rest when it ends`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    await rule(
      h,
      'noisy',
      { types: ['integration.failed'], users: [alice.id], channels: ['inapp', 'email'] },
      { throttle: { max: 3, per: '1h' } },
    );
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await publish(h, source, { title: `Failure ${i}` }));
    await routeAll(h);
    clock.advance(MINUTE);
    ids.push(await publish(h, source, { title: 'Failure 4' }));
    const urgent = await publish(h, source, { title: 'Down', severity: 'critical' });
    await routeAll(h);

    let rows = await inbox(h, alice.id);
    assert.deepEqual(
      rows.map((r) => r.title),
      ['Failure 0', 'Failure 1', 'Failure 2', 'Down'],
    );
    assert.equal((await noiseOf(h, ids[3]!)).throttled[0].until, new Date(START + HOUR).toISOString());
    assert.equal((await noiseOf(h, ids[4]!)).throttled_count, 1);
    assert.equal(await noiseOf(h, urgent), undefined, 'critical events are not throttled');

    clock.advance(HOUR - MINUTE);
    assert.equal(await h.workers.timers.runOnce(), 1);
    rows = await inbox(h, alice.id);
    assert.equal(rows.length, 5);
    assert.equal(rows[4]!.title, '2 more × integration.failed (held back by throttling)');
    assert.deepEqual(
      rows[4]!.data.members.map((m: { event_id: string }) => m.event_id),
      ids.slice(3),
    );
    assert.equal((await deliveriesOf(h, alice.id)).length, 5);

    // A new window.
    await publish(h, source, { title: 'Failure 5' });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).at(-1)!.title, 'Failure 5');
  });

  test(`[${engine}] a daily digest collects events and sends them at the recipient's local time`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h, { timezone: 'Europe/Berlin' });
    await rule(
      h,
      'reports',
      { types: ['report.*'], users: [alice.id], channels: ['inapp', 'email'] },
      {
        digest: { daily_at: '08:00' },
      },
    );
    const ids = [
      await publish(h, source, {
        type: 'report.ready',
        title: 'Sales report',
        actions: [{ id: 'acknowledge', label: 'Acknowledge' }],
      }),
      await publish(h, source, { type: 'report.failed', title: 'Stock report failed' }),
    ];
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).length, 0);
    // 08:00 in Berlin is 07:00 UTC in winter.
    assert.equal((await noiseOf(h, ids[0]!)).digest[0].until, '2026-01-01T07:00:00.000Z');

    clock.advance(7 * HOUR - 1);
    assert.equal(await h.workers.timers.runOnce(), 0);
    clock.advance(1);
    assert.equal(await h.workers.timers.runOnce(), 1);
    const [digest] = await inbox(h, alice.id);
    assert.equal(digest!.title, 'Digest: 2 × notifications');
    assert.equal(digest!.type, 'herald.digest');
    assert.equal(digest!.summary, 'Sales report\nStock report failed');
    assert.equal(digest!.data.count, 2);
    assert.equal(digest!.actionable, 0, "a summary does not answer for its first event's actions");
    assert.equal((await deliveriesOf(h, alice.id)).length, 1);
  });

  test(`[${engine}] events routed while digests flush are neither lost nor sent twice`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    await rule(h, 'all', { types: ['integration.*'], users: [alice.id] }, { digest: 'hourly' });
    const published: string[] = [];
    for (let i = 0; i < 12; i++) {
      published.push(await publish(h, source, { title: `Event ${i}` }));
      published.push(await publish(h, source, { title: `Event ${i}b` }));
      clock.advance(30 * MINUTE);
      await Promise.all([h.workers.router.runOnce(), h.workers.timers.runOnce(), h.workers.timers.runOnce()]);
    }
    await routeAll(h);
    clock.advance(2 * HOUR);
    while ((await h.workers.timers.runOnce()) > 0);
    const members = (await inbox(h, alice.id)).flatMap((n) =>
      n.data.members.map((m: { event_id: string }) => m.event_id),
    );
    assert.deepEqual(members.sort(), published.sort());
  });

  test(`[${engine}] a digest preference collects the categories a user chose`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    const token = await userToken(h, alice.id);
    const put = await h.api(
      'PUT',
      '/v1/me/preferences',
      { preferences: [], digest: { cadence: 'hourly', categories: ['report.*'] } },
      token,
    );
    assert.equal(put.status, 200, put.text);
    assert.deepEqual(put.body.digest, { cadence: 'hourly', categories: ['report.*'] });
    await publish(h, source, { type: 'report.ready', recipients: { users: [alice.id] } });
    await publish(h, source, { type: 'case.created', recipients: { users: [alice.id] } });
    await publish(h, source, {
      type: 'report.urgent',
      severity: 'critical',
      recipients: { users: [alice.id] },
    });
    await routeAll(h);
    assert.deepEqual(
      (await inbox(h, alice.id)).map((n) => n.type),
      ['case.created', 'report.urgent'],
    );
    clock.advance(HOUR);
    await h.workers.timers.runOnce();
    assert.equal((await inbox(h, alice.id)).at(-1)!.type, 'report.ready');
  });

  test(`[${engine}] while a parent event is open its children are held back and attached to it`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    await rule(h, 'all', { types: ['*'], users: [alice.id] });
    const created = await h.api('POST', '/v1/inhibitions', {
      name: 'ERP outage',
      parent: { types: ['erp.down'] },
      children: { types: ['integration.failed'] },
      equal: ['data.system'],
      expires_in: '2h',
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.expires_in, '2h');
    const inhibition = created.body.id as string;

    const down = await publish(h, source, { type: 'erp.down', title: 'SAP down', data: { system: 'sap' } });
    await routeAll(h);
    const child = await publish(h, source, { data: { system: 'sap' } });
    const unrelated = await publish(h, source, { data: { system: 'crm' } });
    await routeAll(h);
    assert.deepEqual(
      (await inbox(h, alice.id)).map((n) => n.event_id),
      [down, unrelated],
    );
    assert.equal((await noiseOf(h, child)).inhibited_by, down);
    assert.deepEqual((await noiseOf(h, down)).opened_inhibition, [inhibition]);

    const shown = await h.api('GET', `/v1/inhibitions/${inhibition}`);
    assert.equal(shown.status, 200, shown.text);
    assert.equal(shown.body.parents[0].event_id, down);
    assert.equal(shown.body.parents[0].state, 'open');
    assert.deepEqual(shown.body.parents[0].values, ['sap']);
    assert.equal(shown.body.parents[0].held.count, 1);
    assert.equal(shown.body.parents[0].held.items[0].event_id, child);

    // A resolve closes the parent.
    const resolve = await publish(h, source, { type: 'erp.down.resolved', data: { system: 'sap' } });
    await routeAll(h);
    assert.deepEqual((await noiseOf(h, resolve)).resolved, [down]);
    const after = await publish(h, source, { data: { system: 'sap' } });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).at(-1)!.event_id, after);

    // So does time, and so does `data.status: resolved` on the parent type.
    await publish(h, source, { type: 'erp.down', data: { system: 'sap' } });
    await routeAll(h);
    clock.advance(2 * HOUR);
    const late = await publish(h, source, { data: { system: 'sap' } });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).at(-1)!.event_id, late);
    await publish(h, source, { type: 'erp.down', data: { system: 'sap' } });
    await publish(h, source, { type: 'erp.down', data: { system: 'sap', status: 'resolved' } });
    const fine = await publish(h, source, { data: { system: 'sap' } });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).at(-1)!.event_id, fine);

    assert.equal((await h.api('GET', '/v1/inhibitions')).body.items.length, 1);
    assert.equal((await h.api('DELETE', `/v1/inhibitions/${inhibition}`)).status, 204);
    assert.equal((await h.api('GET', `/v1/inhibitions/${inhibition}`)).status, 404);
    assert.equal((await h.api('DELETE', `/v1/inhibitions/${inhibition}`)).status, 404);
  });

  test(`[${engine}] a silence holds back matching events during its window and lists them after`, async (t) => {
    const { h, clock, source } = await setup(t, engine);
    const alice = await createUser(h);
    await rule(h, 'all', { types: ['*'], users: [alice.id], channels: ['inapp', 'email'] });
    const created = await h.api('POST', '/v1/silences', {
      matchers: { types: ['backup.*'], sources: [source.id] },
      ends_at: new Date(START + HOUR).toISOString(),
      comment: 'Storage maintenance',
    });
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.state, 'active');
    const silence = created.body.id as string;
    const later = await h.api('POST', '/v1/silences', {
      matchers: { severities: ['info'] },
      starts_at: new Date(START + 2 * HOUR).toISOString(),
      ends_at: new Date(START + 3 * HOUR).toISOString(),
      comment: 'Later',
    });
    assert.equal(later.body.state, 'pending');

    const held = await publish(h, source, { type: 'backup.failed', title: 'Backup failed' });
    const sent = await publish(h, source, { type: 'case.created' });
    await routeAll(h);
    assert.deepEqual(
      (await inbox(h, alice.id)).map((n) => n.event_id),
      [sent],
    );
    assert.equal((await deliveriesOf(h, alice.id)).length, 1);
    assert.equal((await noiseOf(h, held)).silenced_by, silence);

    clock.advance(HOUR);
    const afterwards = await publish(h, source, { type: 'backup.failed' });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).at(-1)!.event_id, afterwards);
    const shown = await h.api('GET', `/v1/silences/${silence}`);
    assert.equal(shown.body.state, 'expired');
    assert.equal(shown.body.held.count, 1);
    assert.deepEqual(shown.body.held.items[0], {
      event_id: held,
      type: 'backup.failed',
      source: source.id,
      severity: 'info',
      subject: null,
      title: 'Backup failed',
      recipients: 1,
      held_at: new Date(START).toISOString(),
    });
    const active = await h.api('GET', '/v1/silences?state=pending');
    assert.deepEqual(
      active.body.items.map((s: { id: string }) => s.id),
      [later.body.id],
    );

    // Deleting one ends it now; it stays listed.
    assert.equal((await h.api('DELETE', `/v1/silences/${later.body.id}`)).status, 204);
    clock.advance(90 * MINUTE);
    await publish(h, source, { type: 'case.created' });
    await routeAll(h);
    assert.equal((await inbox(h, alice.id)).length, 3);
    assert.equal((await h.api('GET', `/v1/silences/${later.body.id}`)).body.state, 'expired');
    assert.equal((await h.api('DELETE', '/v1/silences/sil_nothing')).status, 404);
  });

  test(`[${engine}] silences and inhibitions refuse what cannot work, naming the field`, async (t) => {
    const { h } = await setup(t, engine);
    const cases: [string, Record<string, unknown>, string][] = [
      ['/v1/silences', { matchers: {}, ends_at: '2026-01-02T00:00:00Z', comment: 'x' }, 'body.matchers'],
      [
        '/v1/silences',
        {
          matchers: { types: ['a'] },
          starts_at: '2026-01-02T00:00:00Z',
          ends_at: '2026-01-01T12:00:00Z',
          comment: 'x',
        },
        'body.ends_at',
      ],
      [
        '/v1/silences',
        { matchers: { types: ['a'] }, ends_at: '2025-12-31T00:00:00Z', comment: 'x' },
        'body.ends_at',
      ],
      [
        '/v1/silences',
        { matchers: { colour: 'red' }, ends_at: '2026-01-02T00:00:00Z', comment: 'x' },
        'body.matchers.colour',
      ],
      [
        '/v1/inhibitions',
        { parent: { types: ['a'] }, children: { types: ['b'] }, expires_in: '90d' },
        'body.expires_in',
      ],
      [
        '/v1/inhibitions',
        { parent: { types: ['a'] }, children: { types: ['b'] }, expires_in: 'soon' },
        'body.expires_in',
      ],
      [
        '/v1/inhibitions',
        { parent: { types: ['a'] }, children: { types: ['b'] }, equal: ['system'] },
        'body.equal.0',
      ],
    ];
    for (const [url, body, field] of cases) {
      const res = await h.api('POST', url, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.ok(
        res.body.errors?.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(body)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
    const alice = await createUser(h);
    assert.equal((await h.api('GET', '/v1/silences', undefined, await userToken(h, alice.id))).status, 403);
  });

  test(`[${engine}] quiet hours defer email until they end; the inbox and critical events do not wait`, async (t) => {
    // 23:30 UTC is 00:30 in Berlin, inside 22:00–07:00.
    const { h, source } = await setup(t, engine, Date.parse('2026-01-01T23:30:00Z'));
    const alice = await createUser(h, { timezone: 'Europe/Berlin', email: 'alice@example.com' });
    const token = await userToken(h, alice.id);
    const put = await h.api(
      'PUT',
      '/v1/me/preferences',
      { preferences: [], quiet_hours: { start: '22:00', end: '07:00' } },
      token,
    );
    assert.equal(put.status, 200, put.text);
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, token)).body, {
      preferences: [],
      quiet_hours: { start: '22:00', end: '07:00' },
    });
    await rule(h, 'all', { types: ['*'], users: [alice.id], channels: ['inapp', 'email'] });
    const calm = await publish(h, source, { type: 'case.created' });
    const urgent = await publish(h, source, { type: 'case.escalated', severity: 'critical' });
    await routeAll(h);

    assert.equal((await inbox(h, alice.id)).length, 2, 'the inbox gets both now');
    const byEvent = new Map((await deliveriesOf(h, alice.id)).map((d) => [d.event_id, d]));
    assert.equal(byEvent.get(calm)!.next_attempt_at, Date.parse('2026-01-02T06:00:00Z'));
    assert.equal(byEvent.get(urgent)!.next_attempt_at, Date.parse('2026-01-01T23:30:00Z'));
    assert.deepEqual((await noiseOf(h, calm)).deferred, [
      { user_id: alice.id, channel: 'email', until: '2026-01-02T06:00:00.000Z' },
    ]);

    // A PUT without quiet_hours keeps them; null clears them; equal ends are refused.
    await h.api('PUT', '/v1/me/preferences', { preferences: [] }, token);
    assert.ok((await h.api('GET', '/v1/me/preferences', undefined, token)).body.quiet_hours);
    const same = await h.api(
      'PUT',
      '/v1/me/preferences',
      { preferences: [], quiet_hours: { start: '22:00', end: '22:00' } },
      token,
    );
    assert.equal(same.status, 400);
    await h.api('PUT', `/v1/users/${alice.id}/preferences`, { preferences: [], quiet_hours: null });
    assert.deepEqual((await h.api('GET', '/v1/me/preferences', undefined, token)).body, { preferences: [] });
  });
}

/** An event as routing sees it, not stored. */
function unstored(sourceId: string, fields: Partial<EventRow>): EventRow {
  return {
    id: `evt_explain_${Math.random().toString(36).slice(2)}`,
    source_id: sourceId,
    external_id: 'x',
    idempotency_key: null,
    body_hash: '',
    format: 'native',
    type: 'integration.failed',
    subject: null,
    time: START,
    severity: 'info',
    title: 'Job failed',
    summary: null,
    url: null,
    due_at: null,
    recipients: null,
    actions: null,
    dedup_key: null,
    escalation: null,
    data: null,
    extensions: null,
    status: 'pending',
    received_at: START,
    routed_at: null,
    locked_until: 0,
    response_policy: null,
    callback_url: null,
    resolution: null,
    resolved_at: null,
    resolved_by: null,
    ...fields,
  };
}

for (const engine of ENGINES) {
  test(`[${engine}] explainNoise says why a candidate would not be sent now, and until when`, async (t) => {
    const { h, clock, source } = await setup(t, engine, Date.parse('2026-01-01T23:00:00Z'));
    const now = () => clock.now();
    const alice = await createUser(h, { timezone: 'Europe/Berlin' });
    await h.api('PUT', `/v1/users/${alice.id}/preferences`, {
      preferences: [],
      quiet_hours: { start: '22:00', end: '07:00' },
    });
    await rule(
      h,
      'limited',
      { types: ['integration.*'], users: [alice.id] },
      { throttle: { max: 1, per: '1h' } },
    );
    await rule(
      h,
      'grouped',
      { types: ['sync.*'], users: [alice.id] },
      { group: { by: ['subject'], wait: '2m' } },
    );
    const explain = async (event: EventRow, channel: string, ruleIds: string[]) => {
      const state = await loadExplainState(h.store.db, [event], () => [{ userId: alice.id, ruleIds }], now());
      return explainNoise(state, { event, userId: alice.id, channel, ruleIds }, now());
    };
    const failed = unstored(source.id, {});

    assert.equal(await explain(failed, 'inapp', ['limited']), undefined);
    assert.deepEqual(await explain(failed, 'email', ['limited']), {
      reason: 'quiet_hours',
      until: Date.parse('2026-01-02T06:00:00Z'),
    });
    assert.equal(await explain({ ...failed, severity: 'critical' }, 'email', ['limited']), undefined);

    await publish(h, source, { dedup_key: 'k' });
    await routeAll(h);
    const [open] = await inbox(h, alice.id);
    assert.deepEqual(await explain({ ...failed, dedup_key: 'k' }, 'inapp', ['limited']), {
      reason: 'deduplicated',
      deduplicated_into: open!.id,
    });
    assert.deepEqual(await explain(failed, 'inapp', ['limited']), {
      reason: 'throttled',
      rule_id: 'limited',
      max: 1,
      until: Date.parse('2026-01-02T00:00:00Z'),
    });
    assert.deepEqual(
      await explain(unstored(source.id, { type: 'sync.failed', subject: 'S1' }), 'inapp', ['grouped']),
      {
        reason: 'grouped',
        rule_id: 'grouped',
        group: 'S1',
        until: now() + 2 * MINUTE,
      },
    );

    const silence = await h.api('POST', '/v1/silences', {
      matchers: { subject: 'S1' },
      ends_at: '2026-01-02T01:00:00Z',
      comment: 'Migration',
    });
    assert.deepEqual(
      await explain(unstored(source.id, { type: 'sync.failed', subject: 'S1' }), 'inapp', ['grouped']),
      {
        reason: 'silenced',
        silence_id: silence.body.id,
        until: Date.parse('2026-01-02T01:00:00Z'),
      },
    );
  });
}

for (const engine of ENGINES) {
  test(`[${engine}] the explain step marks held recipients and lists channels quiet hours defer`, async (t) => {
    const { h, clock, source } = await setup(t, engine, Date.parse('2026-01-01T23:00:00Z'));
    const calm = await createUser(h, { timezone: 'Europe/Berlin' });
    const busy = await createUser(h);
    await h.api('PUT', `/v1/users/${calm.id}/preferences`, {
      preferences: [],
      quiet_hours: { start: '22:00', end: '07:00' },
    });
    await rule(h, 'both', { types: ['*'], users: [calm.id, busy.id], channels: ['inapp', 'email'] });
    const explained = await explainEvent(h.store.db, unstored(source.id, {}), clock.now(), [
      explainNoiseStep,
    ]);
    const byUser = new Map(explained.recipients.map((r) => [r.user_id, r]));
    assert.equal(byUser.get(calm.id)!.notified, true);
    assert.deepEqual(byUser.get(calm.id)!.channels_skipped, [
      { channel: 'email', reason: 'deferred by quiet hours until 2026-01-02T06:00:00.000Z' },
    ]);
    assert.deepEqual(byUser.get(busy.id)!.channels_skipped, []);

    const silence = await h.api('POST', '/v1/silences', {
      matchers: { types: ['integration.*'] },
      ends_at: '2026-01-02T01:00:00Z',
      comment: 'Upgrade',
    });
    const silenced = await explainEvent(h.store.db, unstored(source.id, {}), clock.now(), [explainNoiseStep]);
    for (const r of silenced.recipients) {
      assert.equal(r.notified, false);
      assert.deepEqual(r.held, {
        reason: 'silenced',
        until: '2026-01-02T01:00:00.000Z',
        detail: `silence ${silence.body.id}`,
      });
    }
  });
}
