import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { Publisher } from '../src/announcements/publisher.ts';
import { ManualClock } from '../src/clock.ts';
import type { Engine } from '../src/db/engine.ts';
import { createGroup, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { openInboxStream } from './sse.ts';

const START = Date.parse('2026-01-01T00:00:00Z');
const at = (ms: number) => new Date(START + ms).toISOString();

/** Runs the publisher until nothing is due. */
async function drain(publisher: Publisher): Promise<void> {
  while ((await publisher.runOnce()) > 0);
}

async function announce(h: TestHerald, body: Record<string, unknown>) {
  const res = await h.api('POST', '/v1/announcements', { title: 'Hello', body: 'Read me', ...body });
  assert.equal(res.status, 201, res.text);
  return res.body;
}

async function inbox(h: TestHerald, userId: string) {
  const res = await h.api('GET', '/v1/me/notifications', undefined, await userToken(h, userId));
  assert.equal(res.status, 200, res.text);
  return res.body.items as { id: string; type: string; title: string; event_id: string; state: string }[];
}

/** The user ids holding a notification of `eventId` that is not archived. */
async function reached(h: TestHerald, eventId: string): Promise<string[]> {
  const rows = await h.store.db
    .selectFrom('notifications')
    .select('user_id')
    .where('event_id', '=', eventId)
    .where('state', '!=', 'archived')
    .orderBy('user_id')
    .execute();
  return rows.map((r) => r.user_id);
}

async function bulkUsers(h: TestHerald, users: { id: string; attributes?: Record<string, unknown> }[]) {
  for (let i = 0; i < users.length; i += 10_000) {
    const chunk = users.slice(i, i + 10_000).map((u) => ({ name: `User ${u.id}`, ...u }));
    const res = await h.api('POST', '/v1/users/bulk', { users: chunk });
    assert.equal(res.status, 200, res.text);
  }
}

async function start(t: TestContext, engine: Engine) {
  const clock = new ManualClock(START);
  const h = await startHerald(t, engine, { workers: false, clock });
  return { h, clock, publisher: h.workers.announcements };
}

for (const engine of ENGINES) {
  test(`[${engine}] an announcement to everyone lands in every inbox as a herald.announcement`, async (t) => {
    const { h, publisher } = await start(t, engine);
    await bulkUsers(h, [{ id: 'ana' }, { id: 'ben' }, { id: 'cy' }]);
    const created = await announce(h, {
      audience: { everyone: true },
      title: 'Office closed Friday',
      body: 'The Zurich office is closed on Friday.',
      url: 'https://intranet.example.com/closure',
    });
    const { id, event_id, ...rest } = created;
    assert.match(id, /^ann_/);
    assert.match(event_id, /^evt_/);
    assert.deepEqual(rest, {
      status: 'publishing',
      audience: { everyone: true },
      title: 'Office closed Friday',
      body: 'The Zurich office is closed on Friday.',
      url: 'https://intranet.example.com/closure',
      severity: 'info',
      publish_at: at(0),
      expires_at: null,
      progress: { total: 3, delivered: 0, removed: 0 },
      created_at: at(0),
      updated_at: at(0),
      published_at: null,
      ended_at: null,
    });

    await drain(publisher);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.equal(done.status, 'published');
    assert.deepEqual(done.progress, { total: 3, delivered: 3, removed: 0 });
    assert.equal(done.published_at, at(0));

    const [item] = await inbox(h, 'ben');
    assert.equal(item?.type, 'herald.announcement');
    assert.equal(item?.title, 'Office closed Friday');
    assert.equal(item?.event_id, created.event_id);
    assert.deepEqual(await reached(h, created.event_id), ['ana', 'ben', 'cy']);

    // The event is the notifications' link and shows whom it reached; the router leaves it alone.
    assert.equal(await h.workers.router.runOnce(), 0);
    const event = (await h.api('GET', `/v1/events/${created.event_id}`)).body;
    assert.equal(event.type, 'herald.announcement');
    assert.equal(event.source, 'herald');
    assert.equal(event.routing.recipient_count, 3);
    assert.equal(event.notifications.length, 3);
  });

  test(`[${engine}] the audience is a segment: groups and users, narrowed by roles and attributes`, async (t) => {
    const { h, publisher } = await start(t, engine);
    await bulkUsers(h, [
      { id: 'ana', attributes: { location: 'ZRH', business_unit: 'finance', roles: ['approver'] } },
      { id: 'ben', attributes: { location: 'ZRH', business_unit: 'sales', role: 'finance' } },
      { id: 'cy', attributes: { location: 'BER', business_unit: 'finance', roles: ['finance', 'ops'] } },
      { id: 'dee', attributes: { location: ['ZRH', 'BER'], business_unit: 'finance' } },
      { id: 'eve', attributes: { location: 'zrh', level: 3, remote: true } },
    ]);
    await createGroup(h, 'warehouse', ['cy', 'eve']);
    const cases: [Record<string, unknown>, string[]][] = [
      [{ groups: ['warehouse'] }, ['cy', 'eve']],
      [{ groups: ['warehouse'], users: ['ana'] }, ['ana', 'cy', 'eve']],
      [{ roles: ['finance'] }, ['ben', 'cy']],
      [{ roles: ['approver', 'ops'] }, ['ana', 'cy']],
      [{ attributes: { location: 'ZRH', business_unit: 'finance' } }, ['ana', 'dee']],
      [{ attributes: { level: 3, remote: true } }, ['eve']],
      [{ roles: ['finance'], attributes: { location: 'ZRH' } }, ['ben']],
      [{ groups: ['warehouse'], roles: ['finance'] }, ['cy']],
    ];
    for (const [audience, expected] of cases) {
      const created = await announce(h, { audience });
      assert.equal(created.progress.total, expected.length, JSON.stringify(audience));
      await drain(publisher);
      assert.deepEqual(await reached(h, created.event_id), expected, JSON.stringify(audience));
      const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
      assert.equal(done.progress.delivered, expected.length);
    }
  });

  test(`[${engine}] roles are read from the user's roles and from attributes.roles and attributes.role`, async (t) => {
    const { h, publisher } = await start(t, engine);
    const put = (id: string, body: Record<string, unknown>) =>
      h.api('PUT', `/v1/users/${id}`, { name: id, ...body }).then((r) => assert.ok(r.status < 300, r.text));
    await put('field', { roles: ['finance'] });
    await put('list', { attributes: { roles: ['finance', 'hr'] } });
    await put('single', { attributes: { role: 'finance' } });
    await put('none', { roles: ['hr'], attributes: { department: 'finance' } });
    const created = await announce(h, { audience: { roles: ['finance'] } });
    await drain(publisher);
    assert.deepEqual(await reached(h, created.event_id), ['field', 'list', 'single']);
  });

  test(`[${engine}] a group's audience includes the members of the groups nested in it`, async (t) => {
    const { h, publisher } = await start(t, engine);
    await bulkUsers(h, [{ id: 'ana' }, { id: 'ben' }, { id: 'cy' }]);
    await createGroup(h, 'zrh-night', ['cy']);
    await createGroup(h, 'zrh', ['ben']);
    const nested = await h.api('PUT', '/v1/groups/zrh', {
      name: 'Zurich',
      members: ['ben'],
      groups: ['zrh-night'],
    });
    assert.ok(nested.status < 300, nested.text);
    const created = await announce(h, { audience: { groups: ['zrh'] } });
    assert.equal(created.progress.total, 2);
    await drain(publisher);
    assert.deepEqual(await reached(h, created.event_id), ['ben', 'cy']);
  });

  test(`[${engine}] a scheduled announcement publishes at publish_at, not before`, async (t) => {
    const { h, clock, publisher } = await start(t, engine);
    await createUser(h, { id: 'ana' });
    const created = await announce(h, { audience: { users: ['ana'] }, publish_at: at(60_000) });
    assert.equal(created.status, 'scheduled');
    assert.equal(created.progress.total, 1);

    clock.advance(59_999);
    await drain(publisher);
    assert.deepEqual(await inbox(h, 'ana'), []);
    assert.equal((await h.api('GET', `/v1/announcements/${created.id}`)).body.status, 'scheduled');

    clock.advance(1);
    await drain(publisher);
    assert.equal((await inbox(h, 'ana')).length, 1);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.equal(done.status, 'published');
    assert.equal(done.published_at, at(60_000));
  });

  test(`[${engine}] a scheduled announcement survives a restart and publishes from the next process`, async (t) => {
    const clock = new ManualClock(START);
    const first = await startHerald(t, engine, { workers: false, clock });
    await createUser(first, { id: 'ana' });
    const created = await announce(first, { audience: { everyone: true }, publish_at: at(3_600_000) });
    await first.close();

    const second = await startHerald(t, engine, { workers: false, clock, store: first.store });
    clock.advance(3_600_000);
    await drain(second.workers.announcements);
    assert.equal((await second.api('GET', `/v1/announcements/${created.id}`)).body.status, 'published');
    assert.equal((await inbox(second, 'ana'))[0]?.title, 'Hello');
  });

  test(`[${engine}] a 2,000-user announcement fans out in chunks, with progress after each, and resumes after a restart`, async (t) => {
    const { h } = await start(t, engine);
    const ids = Array.from({ length: 2000 }, (_, i) => `u${String(i).padStart(4, '0')}`);
    await bulkUsers(
      h,
      ids.map((id) => ({ id })),
    );
    const created = await announce(h, { audience: { everyone: true } });
    assert.equal(created.progress.total, 2000);

    const first = new Publisher(h.deps, { chunkSize: 500 });
    const seen: [string, number][] = [];
    for (let i = 0; i < 2; i++) {
      assert.equal(await first.runOnce(), 1);
      const now = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
      seen.push([now.status, now.progress.delivered]);
    }
    // A new publisher (as after a restart) continues from the committed cursor.
    const second = new Publisher(h.deps, { chunkSize: 500 });
    while ((await second.runOnce()) > 0) {
      const now = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
      seen.push([now.status, now.progress.delivered]);
    }
    assert.deepEqual(seen, [
      ['publishing', 500],
      ['publishing', 1000],
      ['publishing', 1500],
      ['published', 2000],
    ]);
    const count = await h.store.db
      .selectFrom('notifications')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .where('event_id', '=', created.event_id)
      .executeTakeFirstOrThrow();
    assert.equal(Number(count.n), 2000);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.deepEqual(done.progress, { total: 2000, delivered: 2000, removed: 0 });
  });

  test(`[${engine}] two nodes fanning out the same announcement create each notification once`, async (t) => {
    const { h } = await start(t, engine);
    await bulkUsers(
      h,
      Array.from({ length: 1200 }, (_, i) => ({ id: `n${i}` })),
    );
    const created = await announce(h, { audience: { everyone: true } });
    const nodes = [new Publisher(h.deps, { chunkSize: 100 }), new Publisher(h.deps, { chunkSize: 100 })];
    for (;;) {
      const steps = await Promise.all(nodes.map((n) => n.runOnce()));
      if (steps.every((s) => s === 0)) break;
    }
    assert.equal((await reached(h, created.event_id)).length, 1200);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.deepEqual(done.progress, { total: 1200, delivered: 1200, removed: 0 });
  });

  test(`[${engine}] an expired announcement leaves inboxes at expires_at`, async (t) => {
    const { h, clock, publisher } = await start(t, engine);
    await bulkUsers(h, [{ id: 'ana' }, { id: 'ben' }]);
    const created = await announce(h, { audience: { everyone: true }, expires_at: at(600_000) });
    await drain(publisher);
    assert.equal((await inbox(h, 'ana')).length, 1);
    const token = await userToken(h, 'ana');
    assert.equal((await h.api('GET', '/v1/me/notifications/unread-count', undefined, token)).body.unread, 1);

    clock.advance(599_999);
    await drain(publisher);
    assert.equal((await inbox(h, 'ana')).length, 1);

    clock.advance(1);
    await drain(publisher);
    assert.deepEqual(await inbox(h, 'ana'), []);
    assert.deepEqual(await inbox(h, 'ben'), []);
    assert.equal((await h.api('GET', '/v1/me/notifications/unread-count', undefined, token)).body.unread, 0);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.equal(done.status, 'expired');
    assert.equal(done.ended_at, at(600_000));
    assert.deepEqual(done.progress, { total: 2, delivered: 2, removed: 2 });
  });

  test(`[${engine}] an announcement that expires before it was published never reaches anyone`, async (t) => {
    const { h, clock, publisher } = await start(t, engine);
    await createUser(h, { id: 'ana' });
    const created = await announce(h, {
      audience: { everyone: true },
      publish_at: at(1000),
      expires_at: at(2000),
    });
    clock.advance(5000);
    await drain(publisher);
    assert.deepEqual(await inbox(h, 'ana'), []);
    assert.equal((await h.api('GET', `/v1/announcements/${created.id}`)).body.status, 'expired');
  });

  test(`[${engine}] cancelling takes a published announcement out of inboxes and stops a scheduled one`, async (t) => {
    const { h, clock, publisher } = await start(t, engine);
    await bulkUsers(h, [{ id: 'ana' }, { id: 'ben' }]);
    const live = await announce(h, { audience: { everyone: true } });
    await drain(publisher);
    assert.equal((await inbox(h, 'ana')).length, 1);

    const cancelled = await h.api('POST', `/v1/announcements/${live.id}/cancel`);
    assert.equal(cancelled.status, 200, cancelled.text);
    assert.equal(cancelled.body.status, 'cancelled');
    await drain(publisher);
    assert.deepEqual(await inbox(h, 'ana'), []);
    assert.deepEqual((await h.api('GET', `/v1/announcements/${live.id}`)).body.progress, {
      total: 2,
      delivered: 2,
      removed: 2,
    });
    // Cancelling again changes nothing.
    assert.equal((await h.api('POST', `/v1/announcements/${live.id}/cancel`)).body.status, 'cancelled');

    const scheduled = await announce(h, { audience: { everyone: true }, publish_at: at(60_000) });
    assert.equal((await h.api('DELETE', `/v1/announcements/${scheduled.id}`)).status, 204);
    clock.advance(120_000);
    await drain(publisher);
    assert.deepEqual(await inbox(h, 'ben'), []);
    const after = (await h.api('GET', `/v1/announcements/${scheduled.id}`)).body;
    assert.equal(after.status, 'cancelled');
    assert.equal(after.progress.delivered, 0);

    const listed = (await h.api('GET', '/v1/announcements?status=cancelled')).body;
    assert.deepEqual(
      listed.items.map((a: { id: string }) => a.id),
      [scheduled.id, live.id],
    );
    assert.equal((await h.api('POST', '/v1/announcements/ann_nothing/cancel')).status, 404);
  });

  test(`[${engine}] cancelling mid fan-out stops it and withdraws what was delivered`, async (t) => {
    const { h, clock } = await start(t, engine);
    await bulkUsers(
      h,
      Array.from({ length: 300 }, (_, i) => ({ id: `m${String(i).padStart(3, '0')}` })),
    );
    const created = await announce(h, { audience: { everyone: true } });
    const publisher = new Publisher(h.deps, { chunkSize: 100 });
    assert.equal(await publisher.runOnce(), 1);
    assert.equal((await reached(h, created.event_id)).length, 100);
    assert.equal((await h.api('DELETE', `/v1/announcements/${created.id}`)).status, 204);
    await drain(publisher);
    assert.deepEqual(await reached(h, created.event_id), []);
    const done = (await h.api('GET', `/v1/announcements/${created.id}`)).body;
    assert.equal(done.status, 'cancelled');
    assert.deepEqual(done.progress, { total: 300, delivered: 100, removed: 100 });
    // An expired announcement cannot be cancelled any more.
    const expiring = await announce(h, { audience: { users: ['m001'] }, expires_at: at(1000) });
    clock.advance(1000);
    await drain(publisher);
    const conflict = await h.api('POST', `/v1/announcements/${expiring.id}/cancel`);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.code, 'conflict');
  });

  test(`[${engine}] open inbox streams see an announcement arrive and leave`, async (t) => {
    const { h, clock, publisher } = await start(t, engine);
    h.deps.hub.start();
    const base = await h.listen();
    await createUser(h, { id: 'ana' });
    const frames = await openInboxStream(t, base, await userToken(h, 'ana'));
    await announce(h, { audience: { everyone: true }, title: 'Fire drill at 10', expires_at: at(60_000) });
    await drain(publisher);
    const arrived = await frames.next();
    assert.equal(arrived.event, 'notification');
    assert.equal(JSON.parse(arrived.data).title, 'Fire drill at 10');

    clock.advance(60_000);
    await drain(publisher);
    const left = await frames.next();
    assert.equal(left.event, 'notification.updated');
    assert.equal(JSON.parse(left.data).state, 'archived');
  });

  test(`[${engine}] a bad audience or time is refused with 400`, async (t) => {
    const { h } = await start(t, engine);
    await createUser(h, { id: 'ana', attributes: { location: 'ZRH', roles: ['finance'] } });
    await createGroup(h, 'ops', ['ana']);
    const bad: Record<string, unknown>[] = [
      { audience: {} },
      { audience: { everyone: false } },
      { audience: { everyone: true, groups: ['ops'] } },
      { audience: { groups: [] } },
      { audience: { teams: ['ops'] } },
      { audience: { attributes: { location: { city: 'ZRH' } } } },
      { audience: { attributes: {} } },
      { audience: 'everyone' },
      { audience: { everyone: true }, severity: 'loud' },
      { audience: { everyone: true }, url: 'ftp://example.com/x' },
      { audience: { everyone: true }, publish_at: 'tomorrow' },
      { audience: { everyone: true }, expires_at: at(-1) },
      { audience: { everyone: true }, publish_at: at(5000), expires_at: at(5000) },
      { audience: { everyone: true }, title: '' },
    ];
    for (const body of bad) {
      const res = await h.api('POST', '/v1/announcements', { title: 'T', body: 'B', ...body });
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed', JSON.stringify(body));
    }
    assert.deepEqual((await h.api('GET', '/v1/announcements')).body, { items: [], next_cursor: null });
  });

  test(`[${engine}] an audience naming an unknown group, user, role or attribute value answers unknown_reference`, async (t) => {
    const { h } = await start(t, engine);
    await createUser(h, { id: 'ana', attributes: { location: 'ZRH', role: 'finance' } });
    const group = await h.api('POST', '/v1/announcements', {
      title: 'T',
      body: 'B',
      audience: { groups: ['no-such-group'] },
    });
    assert.equal(group.status, 400);
    assert.equal(group.body.code, 'unknown_reference');
    assert.deepEqual(group.body.unknown, { users: [], groups: ['no-such-group'] });

    const segment = await h.api('POST', '/v1/announcements', {
      title: 'T',
      body: 'B',
      audience: { roles: ['finance', 'finanse'], attributes: { location: 'ZHR' } },
    });
    assert.equal(segment.status, 400);
    assert.equal(segment.body.code, 'unknown_reference');
    assert.deepEqual(segment.body.unknown, {
      users: [],
      groups: [],
      roles: ['finanse'],
      attributes: { location: 'ZHR' },
    });
    assert.equal(
      (await h.api('POST', '/v1/announcements', { title: 'T', body: 'B', audience: { users: ['bob'] } })).body
        .code,
      'unknown_reference',
    );
  });

  test(`[${engine}] announcements list newest first, page by page, and are admin-only`, async (t) => {
    const { h, clock } = await start(t, engine);
    await createUser(h, { id: 'ana' });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await announce(h, { audience: { everyone: true }, title: `A${i}` })).id);
      clock.advance(1);
    }
    const first = (await h.api('GET', '/v1/announcements?limit=2')).body;
    assert.deepEqual(
      first.items.map((a: { id: string }) => a.id),
      [ids[2], ids[1]],
    );
    const second = (await h.api('GET', `/v1/announcements?limit=2&cursor=${first.next_cursor}`)).body;
    assert.deepEqual(
      second.items.map((a: { id: string }) => a.id),
      [ids[0]],
    );
    assert.equal(second.next_cursor, null);
    const token = await userToken(h, 'ana');
    assert.equal((await h.api('GET', '/v1/announcements', undefined, token)).status, 403);
    assert.equal((await h.api('GET', '/v1/announcements/ann_unknown')).status, 404);
  });
}
