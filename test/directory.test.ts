import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { groupMembers } from '../src/directory/groups.repo.ts';
import { findUsersByEmails, findUsersByIds } from '../src/directory/users.repo.ts';
import { createGroup, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, walk } from './helpers.ts';

interface ListItem {
  id: string;
  attributes?: Record<string, unknown>;
  member_count?: number;
}

function bulkUsers(count: number, from = 0, extra: Record<string, unknown> = {}) {
  return Array.from({ length: count }, (_, i) => ({
    id: `u${String(from + i).padStart(5, '0')}`,
    name: `User ${from + i}`,
    email: `User${from + i}@Example.com`,
    timezone: 'Europe/Berlin',
    locale: 'de-DE',
    attributes: { location: i % 2 === 0 ? 'berlin' : 'paris', level: i % 3, roles: ['staff'] },
    ...extra,
  }));
}

for (const engine of ENGINES) {
  test(`[${engine}] creates a user with 201, replaces it with 200 and keeps created_at`, async (t) => {
    const clock = new ManualClock();
    const h = await startHerald(t, engine, { workers: false, clock });
    const created = await h.api('PUT', '/v1/users/alice', {
      name: 'Alice',
      email: 'Alice@Example.COM',
      phone: '+49 30 1234567',
      locale: 'en-gb',
      timezone: 'europe/berlin',
      manager: 'bob',
      attributes: { location: 'berlin', level: 3, approver: true, roles: ['finance', 'ops'] },
    });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body, {
      id: 'alice',
      name: 'Alice',
      email: 'alice@example.com',
      phone: '+49 30 1234567',
      locale: 'en-GB',
      timezone: 'Europe/Berlin',
      manager: 'bob',
      roles: [],
      attributes: { location: 'berlin', level: 3, approver: true, roles: ['finance', 'ops'] },
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:00.000Z',
    });

    clock.advance(60_000);
    const replaced = await h.api('PUT', '/v1/users/alice', { id: 'alice', name: 'Alice A.' });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.name, 'Alice A.');
    assert.equal(replaced.body.email, null);
    assert.equal(replaced.body.manager, null);
    assert.deepEqual(replaced.body.attributes, {});
    assert.equal(replaced.body.created_at, '2026-01-01T00:00:00.000Z');
    assert.equal(replaced.body.updated_at, '2026-01-01T00:01:00.000Z');
    assert.deepEqual((await h.api('GET', '/v1/users/alice')).body, replaced.body);

    const audit = await h.store.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject_id', '=', 'alice')
      .execute();
    assert.deepEqual(
      audit.map((a) => a.action),
      ['user.created', 'user.updated'],
    );
  });

  test(`[${engine}] rejects invalid user fields with 400 naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const cases: [string, unknown, string][] = [
      ['u1', { email: 'x@example.com' }, 'body.name'],
      ['u1', { name: 'U', email: 'not-an-email' }, 'body.email'],
      ['u1', { name: 'U', timezone: 'Mars/Olympus_Mons' }, 'body.timezone'],
      ['u1', { name: 'U', locale: 'en_US' }, 'body.locale'],
      ['u1', { name: 'U', phone: 'call me' }, 'body.phone'],
      ['u1', { name: 'U', manager: 'u1' }, 'body.manager'],
      ['u1', { name: 'U', attributes: { nested: { a: 1 } } }, 'body.attributes.nested'],
      ['u1', { name: 'U', attributes: { list: [1, 2] } }, 'body.attributes.list'],
      ['u1', { name: 'U', attributes: { 'bad key': 'x' } }, 'body.attributes.bad key'],
      ['u1', { name: 'U', nickname: 'x' }, 'body.nickname'],
      ['u1', { id: 'u2', name: 'U' }, 'body.id'],
      ['-bad', { name: 'U' }, 'params.id'],
    ];
    for (const [id, body, field] of cases) {
      const res = await h.api('PUT', `/v1/users/${encodeURIComponent(id)}`, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(
        res.body.errors?.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(body)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
    assert.equal((await h.api('GET', '/v1/users')).body.items.length, 0);
  });

  test(`[${engine}] answers 404 for users and groups that do not exist`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'someone' });
    for (const [method, url, body] of [
      ['GET', '/v1/users/nobody', undefined],
      ['DELETE', '/v1/users/nobody', undefined],
      ['GET', '/v1/groups/none', undefined],
      ['DELETE', '/v1/groups/none', undefined],
      ['POST', '/v1/groups/none/members', { users: ['someone'] }],
      ['DELETE', '/v1/groups/none/members/someone', undefined],
    ] as const) {
      const res = await h.api(method, url, body);
      assert.equal(res.status, 404, `${method} ${url}: ${res.text}`);
      assert.equal(res.body.code, 'not_found');
    }
  });

  test(`[${engine}] deleting a user removes their memberships and revokes their inbox tokens`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'carol' });
    await createUser(h, { id: 'dave' });
    await createGroup(h, 'ops', ['carol', 'dave']);
    const token = await userToken(h, 'carol');
    assert.deepEqual(await h.deps.auth.identify(`Bearer ${token}`), { kind: 'user', userId: 'carol' });

    assert.equal((await h.api('DELETE', '/v1/users/carol')).status, 204);
    assert.equal((await h.api('GET', '/v1/users/carol')).status, 404);
    assert.deepEqual((await h.api('GET', '/v1/groups/ops')).body.members, ['dave']);
    assert.equal(await h.deps.auth.identify(`Bearer ${token}`), null);
  });

  test(`[${engine}] lists users page by page, and filters by email and attributes`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const bulk = await h.api('POST', '/v1/users/bulk', { users: bulkUsers(23) });
    assert.equal(bulk.status, 200, bulk.text);

    const all = await walk<ListItem>(h, '/v1/users', 5);
    assert.equal(all.pages, 5);
    assert.equal(all.items.length, 23);
    assert.equal(new Set(all.items.map((u) => u.id)).size, 23);

    const byEmail = await h.api('GET', '/v1/users?email=USER7@example.COM');
    assert.deepEqual(
      byEmail.body.items.map((u: { id: string }) => u.id),
      ['u00007'],
    );

    const berlin = await walk<ListItem>(h, '/v1/users?attr.location=berlin', 4);
    assert.equal(berlin.items.length, 12);
    assert.ok(berlin.items.every((u) => u.attributes?.['location'] === 'berlin'));
    const levelTwo = await walk<ListItem>(h, '/v1/users?attr.level=2&attr.location=paris', 2);
    assert.deepEqual(levelTwo.items.map((u) => u.id).sort(), ['u00005', 'u00011', 'u00017']);
    const staff = await h.api('GET', '/v1/users?attr.roles=staff&limit=100');
    assert.equal(staff.body.items.length, 23);
    const nobody = await h.api('GET', '/v1/users?attr.location=ber');
    assert.equal(nobody.body.items.length, 0);
  });

  test(`[${engine}] bulk-upserts 5,000 users in one request with one audit entry`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const first = await h.api('POST', '/v1/users/bulk', { users: bulkUsers(5000) });
    assert.equal(first.status, 200, first.text.slice(0, 500));
    assert.deepEqual(first.body, { created: 5000, updated: 0 });

    // Half of them again (changed) plus 500 new ones.
    const second = await h.api('POST', '/v1/users/bulk', {
      users: bulkUsers(3000, 2500, { name: 'Renamed', manager: 'u00000' }),
    });
    assert.deepEqual(second.body, { created: 500, updated: 2500 });

    const count = await h.store.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<number | string>().as('n'))
      .executeTakeFirstOrThrow();
    assert.equal(Number(count.n), 5500);
    const u = (await h.api('GET', '/v1/users/u04000')).body;
    assert.equal(u.name, 'Renamed');
    assert.equal(u.manager, 'u00000');
    assert.equal(u.email, 'user4000@example.com');
    assert.equal((await h.api('GET', '/v1/users/u00001')).body.name, 'User 1');

    const audit = await h.store.db
      .selectFrom('audit_log')
      .selectAll()
      .where('action', 'like', 'user.%')
      .orderBy('id')
      .execute();
    assert.equal(audit.length, 2);
    assert.deepEqual(JSON.parse(audit[1]!.data!), { count: 3000, created: 500, updated: 2500 });
  });

  test(`[${engine}] a bulk request with bad items changes nothing and names users[i].field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const users: Record<string, unknown>[] = bulkUsers(10);
    users[3] = { ...users[3], email: 'nope' };
    users[7] = { ...users[7], timezone: 'Nowhere/City' };
    users[8] = { ...users[8], id: 'u00001' };
    users[9] = { name: 'no id' };
    const res = await h.api('POST', '/v1/users/bulk', { users });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'validation_failed');
    const fields = res.body.errors.map((e: { field: string }) => e.field);
    assert.deepEqual(fields, ['users[3].email', 'users[7].timezone', 'users[8].id', 'users[9].id']);
    assert.equal((await h.api('GET', '/v1/users')).body.items.length, 0);

    for (const body of [{}, { users: [] }, { users: 'x' }, { users: bulkUsers(1), more: 1 }]) {
      const bad = await h.api('POST', '/v1/users/bulk', body);
      assert.equal(bad.status, 400, JSON.stringify(body));
      assert.equal(bad.body.code, 'validation_failed');
    }
    const tooMany = await h.api('POST', '/v1/users/bulk', { users: bulkUsers(10_001) });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.errors[0].field, 'body.users');
  });

  test(`[${engine}] creates a group, replaces its members and lists groups with member counts`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    for (const id of ['ann', 'ben', 'cat']) await createUser(h, { id });
    const created = await h.api('PUT', '/v1/groups/finance', {
      name: 'Finance',
      members: ['ben', 'ann', 'ann'],
    });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body.members, ['ann', 'ben']);
    assert.equal(created.body.name, 'Finance');

    const replaced = await h.api('PUT', '/v1/groups/finance', { name: 'Finance team', members: ['cat'] });
    assert.equal(replaced.status, 200);
    assert.deepEqual(replaced.body.members, ['cat']);
    assert.equal((await h.api('GET', '/v1/groups/finance')).body.name, 'Finance team');

    for (let i = 0; i < 4; i++) await createGroup(h, `g${i}`, i % 2 === 0 ? ['ann'] : []);
    const all = await walk<ListItem>(h, '/v1/groups', 2);
    assert.equal(all.pages, 3);
    assert.deepEqual(Object.fromEntries(all.items.map((g) => [g.id, g.member_count])), {
      finance: 1,
      g0: 1,
      g1: 0,
      g2: 1,
      g3: 0,
    });
  });

  test(`[${engine}] refuses group members that do not exist, naming them`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'real' });
    const res = await h.api('PUT', '/v1/groups/team', {
      name: 'Team',
      members: ['real', 'ghost', 'phantom'],
    });
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'unknown_reference');
    assert.deepEqual(res.body.unknown.users, ['ghost', 'phantom']);
    assert.match(res.body.detail, /ghost/);
    assert.equal((await h.api('GET', '/v1/groups/team')).status, 404);

    await createGroup(h, 'team', ['real']);
    const add = await h.api('POST', '/v1/groups/team/members', { users: ['ghost'] });
    assert.equal(add.status, 400);
    assert.equal(add.body.code, 'unknown_reference');
    assert.deepEqual((await h.api('GET', '/v1/groups/team')).body.members, ['real']);
  });

  test(`[${engine}] adds and removes single group members`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    for (const id of ['x1', 'x2', 'x3']) await createUser(h, { id });
    await createGroup(h, 'queue', ['x1']);
    const added = await h.api('POST', '/v1/groups/queue/members', { users: ['x1', 'x3', 'x2'] });
    assert.equal(added.status, 200, added.text);
    assert.deepEqual(added.body.members, ['x1', 'x2', 'x3']);
    assert.equal((await h.api('DELETE', '/v1/groups/queue/members/x2')).status, 204);
    assert.equal((await h.api('DELETE', '/v1/groups/queue/members/x2')).status, 404);
    assert.deepEqual((await h.api('GET', '/v1/groups/queue')).body.members, ['x1', 'x3']);
    assert.equal((await h.api('DELETE', '/v1/groups/queue')).status, 204);
    assert.equal((await h.api('GET', '/v1/groups/queue')).status, 404);
    assert.equal((await h.api('GET', '/v1/users/x1')).status, 200);
  });

  test(`[${engine}] the directory lookups the router uses find users by id, email (any case) and group`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const bulk = await h.api('POST', '/v1/users/bulk', { users: bulkUsers(1200) });
    assert.equal(bulk.status, 200);
    await createGroup(h, 'a', ['u00001', 'u00002']);
    await createGroup(h, 'b', ['u00003']);
    const db = h.store.db;

    const ids = Array.from({ length: 1100 }, (_, i) => `u${String(i * 2).padStart(5, '0')}`);
    const byId = await findUsersByIds(db, [...ids, 'missing']);
    assert.equal(byId.length, 600); // the even ids up to u01198
    const byEmail = await findUsersByEmails(db, [
      'USER5@EXAMPLE.COM',
      'user6@example.com',
      'nobody@example.com',
    ]);
    assert.deepEqual(byEmail.map((u) => u.id).sort(), ['u00005', 'u00006']);
    assert.deepEqual(
      (await groupMembers(db, ['a', 'b', 'c'])).map((m) => ({ ...m })),
      [
        { group_id: 'a', user_id: 'u00001' },
        { group_id: 'a', user_id: 'u00002' },
        { group_id: 'b', user_id: 'u00003' },
      ],
    );
  });

  test(`[${engine}] directory routes need the admin token`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'eve' });
    const token = await userToken(h, 'eve');
    assert.equal((await h.api('GET', '/v1/users', undefined, null)).status, 401);
    assert.equal((await h.api('GET', '/v1/users/eve', undefined, token)).status, 403);
    assert.equal((await h.api('PUT', '/v1/groups/g', { name: 'g', members: [] }, token)).status, 403);
    assert.equal((await h.api('POST', '/v1/users/bulk', { users: bulkUsers(1) }, token)).status, 403);
  });
}
