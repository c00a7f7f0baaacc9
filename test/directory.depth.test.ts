import assert from 'node:assert/strict';
import { test } from 'node:test';
import { expandGroups } from '../src/directory/groups.repo.ts';
import { findSegmentUsers } from '../src/directory/segments.ts';
import { createGroup } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';
import { people } from './routing.fixtures.ts';

async function putGroup(h: TestHerald, id: string, members: string[], groups?: string[]) {
  return h.api('PUT', `/v1/groups/${id}`, { name: `Group ${id}`, members, ...(groups ? { groups } : {}) });
}

for (const engine of ENGINES) {
  test(`[${engine}] users carry roles: saved, replaced, bulk-loaded, filtered by, and checked`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const put = await h.api('PUT', '/v1/users/ann', {
      name: 'Ann',
      roles: ['finance', 'approver', 'finance'],
      attributes: { location: 'berlin' },
    });
    assert.equal(put.status, 201, put.text);
    assert.deepEqual(put.body.roles, ['finance', 'approver']);
    const bulk = await h.api('POST', '/v1/users/bulk', {
      users: [
        { id: 'bob', name: 'Bob', roles: ['warehouse'] },
        { id: 'cem', name: 'Cem', roles: ['finance'], attributes: { location: 'paris' } },
      ],
    });
    assert.equal(bulk.status, 200, bulk.text);
    const ids = async (query: string) =>
      (await h.api('GET', `/v1/users?${query}`)).body.items.map((u: { id: string }) => u.id);
    assert.deepEqual(await ids('role=finance'), ['ann', 'cem']);
    assert.deepEqual(await ids('role=finance&attr.location=paris'), ['cem']);
    assert.deepEqual(await ids('role=nobody'), []);

    const replaced = await h.api('PUT', '/v1/users/ann', { name: 'Ann', roles: ['warehouse'] });
    assert.deepEqual(replaced.body.roles, ['warehouse']);
    assert.deepEqual(replaced.body.attributes, {});
    assert.deepEqual(await ids('role=finance'), ['cem']);
    assert.deepEqual(await ids('attr.location=berlin'), []);

    for (const [roles, field] of [
      ['finance', 'body.roles'],
      [['ok', 'not ok'], 'body.roles.1'],
      [[7], 'body.roles.0'],
    ] as const) {
      const res = await h.api('PUT', '/v1/users/dan', { name: 'Dan', roles });
      assert.equal(res.status, 400, res.text);
      assert.ok(
        res.body.errors.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(roles)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
  });

  test(`[${engine}] a segment is everyone holding one of its roles whose attributes match, lists by any item`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(
      h,
      { id: 'a', roles: ['warehouse'], attributes: { location: 'hamburg', level: 2 } },
      { id: 'b', roles: ['warehouse', 'lead'], attributes: { location: ['hamburg', 'kiel'], level: 3 } },
      { id: 'c', roles: ['finance'], attributes: { location: 'hamburg', level: 2 } },
      { id: 'd', roles: ['lead'], attributes: { location: 'munich', level: true } },
    );
    const find = async (roles: string[], attributes: Record<string, string[]>) =>
      [...(await findSegmentUsers(h.store.db, { roles, attributes })).keys()].sort();
    assert.deepEqual(await find(['warehouse'], {}), ['a', 'b']);
    assert.deepEqual(await find(['warehouse', 'lead'], {}), ['a', 'b', 'd']);
    assert.deepEqual(await find([], { location: ['hamburg'] }), ['a', 'b', 'c']);
    assert.deepEqual(await find(['warehouse'], { location: ['kiel', 'munich'] }), ['b']);
    assert.deepEqual(await find([], { location: ['hamburg'], level: ['2'] }), ['a', 'c']);
    assert.deepEqual(await find(['lead'], { level: ['true'] }), ['d']);
    const matched = await findSegmentUsers(h.store.db, {
      roles: [],
      attributes: { location: ['kiel', 'hamburg'] },
    });
    assert.deepEqual([...matched.get('b')!.get('location')!].sort(), ['hamburg', 'kiel']);
  });

  test(`[${engine}] groups nest: members of nested groups belong to the parent, shown and expanded`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(h, { id: 'u1' }, { id: 'u2' }, { id: 'u3' }, { id: 'u4' });
    await createGroup(h, 'dba', ['u3']);
    assert.equal((await putGroup(h, 'sre', ['u2'], ['dba'])).status, 201);
    const parent = await putGroup(h, 'ops', ['u1'], ['sre', 'sre']);
    assert.equal(parent.status, 201, parent.text);
    assert.deepEqual([parent.body.members, parent.body.groups], [['u1'], ['sre']]);
    assert.deepEqual((await h.api('GET', '/v1/groups/ops')).body.groups, ['sre']);
    assert.deepEqual((await h.api('GET', '/v1/groups/dba')).body.groups, []);
    // A diamond: dba is reached twice, its people count once.
    assert.equal((await putGroup(h, 'ops', ['u1'], ['sre', 'dba'])).status, 200);
    const expanded = await expandGroups(h.store.db, ['ops', 'sre', 'dba', 'missing']);
    assert.deepEqual(Object.fromEntries([...expanded].map(([g, users]) => [g, [...users].sort()])), {
      ops: ['u1', 'u2', 'u3'],
      sre: ['u2', 'u3'],
      dba: ['u3'],
    });
    // Deleting a nested group unnests it.
    assert.equal((await h.api('DELETE', '/v1/groups/dba')).status, 204);
    assert.deepEqual((await h.api('GET', '/v1/groups/ops')).body.groups, ['sre']);
  });

  test(`[${engine}] a nesting that would make a cycle is refused with the cycle spelled out`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(h, { id: 'u1' });
    await createGroup(h, 'a', ['u1']);
    assert.equal((await putGroup(h, 'b', [], ['a'])).status, 201);
    assert.equal((await putGroup(h, 'c', [], ['b'])).status, 201);
    const cases: [string, string[], string, RegExp][] = [
      ['a', ['a'], 'body.groups.0', /"a" in "a" would make a cycle: a → a/],
      ['a', ['c'], 'body.groups.0', /cycle: a → c → b → a/],
      ['b', ['a', 'c'], 'body.groups.1', /cycle: b → c → b/],
      ['new', ['new'], 'body.groups.0', /cycle: new → new/],
    ];
    for (const [id, groups, field, detail] of cases) {
      const res = await putGroup(h, id, [], groups);
      assert.equal(res.status, 400, `${id} ${groups}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      assert.equal(res.body.errors[0].field, field);
      assert.match(res.body.detail, detail);
    }
    assert.deepEqual((await h.api('GET', '/v1/groups/a')).body.groups, [], 'nothing changed');
    assert.equal((await h.api('GET', '/v1/groups/new')).status, 404);
    const unknown = await putGroup(h, 'd', [], ['ghost']);
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.code, 'unknown_reference');
    assert.deepEqual(unknown.body.unknown, { users: [], groups: ['ghost'] });
  });
}
