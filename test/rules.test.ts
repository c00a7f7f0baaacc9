import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { listEnabledRules } from '../src/routing/rules.repo.ts';
import { createGroup, createSource, createUser } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, walk } from './helpers.ts';

/** A valid rule body; `overrides` replace top-level fields. */
function ruleBody(overrides: Record<string, unknown> = {}) {
  return {
    match: { types: ['case.*'] },
    recipients: { from_data: ['data.owner'] },
    channels: ['inapp'],
    ...overrides,
  };
}

async function putRule(h: TestHerald, id: string, overrides: Record<string, unknown> = {}) {
  const res = await h.api('PUT', `/v1/rules/${id}`, ruleBody(overrides));
  assert.ok(res.status === 200 || res.status === 201, res.text);
  return res.body;
}

for (const engine of ENGINES) {
  test(`[${engine}] creates a rule with defaults, then replaces it keeping created_at`, async (t) => {
    const clock = new ManualClock();
    const h = await startHerald(t, engine, { workers: false, clock });
    await createUser(h, { id: 'approver' });
    await createGroup(h, 'finance', ['approver']);
    const created = await h.api('PUT', '/v1/rules/po-approvals', ruleBody());
    assert.equal(created.status, 201, created.text);
    assert.deepEqual(created.body, {
      id: 'po-approvals',
      name: null,
      position: 0,
      enabled: true,
      continue: false,
      match: { types: ['case.*'] },
      recipients: { from_data: ['data.owner'] },
      channels: ['inapp'],
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:00.000Z',
    });

    clock.advance(1000);
    const full = {
      name: 'Purchase orders',
      position: -5,
      enabled: false,
      match: {
        types: ['purchase_order.*', 'invoice.failed'],
        sources: ['erp'],
        severities: ['error', 'critical'],
      },
      recipients: { users: ['approver'], groups: ['finance'], from_data: ['subject', 'data.approvers'] },
      channels: ['inapp'],
    };
    const replaced = await h.api('PUT', '/v1/rules/po-approvals', full);
    assert.equal(replaced.status, 200, replaced.text);
    assert.deepEqual(replaced.body, {
      id: 'po-approvals',
      continue: false,
      ...full,
      created_at: '2026-01-01T00:00:00.000Z',
      updated_at: '2026-01-01T00:00:01.000Z',
    });
    assert.deepEqual((await h.api('GET', '/v1/rules/po-approvals')).body, replaced.body);

    const audit = await h.store.db
      .selectFrom('audit_log')
      .select('action')
      .where('subject_type', '=', 'rule')
      .execute();
    assert.deepEqual(
      audit.map((a) => a.action),
      ['rule.created', 'rule.updated'],
    );
  });

  test(`[${engine}] rejects invalid rules with 400 naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const cases: [Record<string, unknown>, string][] = [
      [{ match: { types: [] } }, 'body.match.types'],
      [{ match: { types: ['case..created'] } }, 'body.match.types.0'],
      [{ match: { types: ['case created'] } }, 'body.match.types.0'],
      [{ match: { types: ['case.*'], severities: ['urgent'] } }, 'body.match.severities.0'],
      [{ match: {} }, 'body.match.types'],
      [{ recipients: {} }, 'body.recipients'],
      [{ recipients: { users: [], groups: [] } }, 'body.recipients'],
      [{ recipients: { from_data: ['owner'] } }, 'body.recipients.from_data.0'],
      [{ recipients: { from_data: ['data.'] } }, 'body.recipients.from_data.0'],
      [{ channels: [] }, 'body.channels'],
      [{ channels: ['inapp', 'carrier_pigeon'] }, 'body.channels.1'],
      [{ position: 1.5 }, 'body.position'],
      [{ colour: 'red' }, 'body.colour'],
    ];
    for (const [overrides, field] of cases) {
      const res = await h.api('PUT', '/v1/rules/r1', ruleBody(overrides));
      assert.equal(res.status, 400, `${JSON.stringify(overrides)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      assert.ok(
        res.body.errors?.some((e: { field: string }) => e.field === field),
        `${JSON.stringify(overrides)} → ${JSON.stringify(res.body.errors)}`,
      );
    }
    const channel = await h.api('PUT', '/v1/rules/r1', ruleBody({ channels: ['pager'] }));
    assert.match(channel.body.detail, /"pager" is not a known channel/);
    const badId = await h.api('PUT', '/v1/rules/bad%20id', ruleBody());
    assert.equal(badId.status, 400);
    assert.equal((await h.api('GET', '/v1/rules')).body.items.length, 0);
  });

  test(`[${engine}] refuses rules naming users or groups that do not exist, listing them`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createUser(h, { id: 'known' });
    const res = await h.api(
      'PUT',
      '/v1/rules/r1',
      ruleBody({ recipients: { users: ['known', 'ghost'], groups: ['nowhere'] } }),
    );
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'unknown_reference');
    assert.deepEqual(res.body.unknown, { users: ['ghost'], groups: ['nowhere'] });
    assert.match(res.body.detail, /ghost/);
    assert.match(res.body.detail, /nowhere/);
    assert.equal((await h.api('GET', '/v1/rules/r1')).status, 404);
  });

  test(`[${engine}] lists rules by position then id, page by page`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await putRule(h, 'b', { position: 10 });
    await putRule(h, 'a', { position: 10 });
    await putRule(h, 'late', { position: 100 });
    await putRule(h, 'early', { position: -3 });
    await putRule(h, 'mid', {});
    const { items, pages } = await walk(h, '/v1/rules', 2);
    assert.equal(pages, 3);
    assert.deepEqual(
      items.map((r) => r.id),
      ['early', 'mid', 'a', 'b', 'late'],
    );
    const bad = await h.api('GET', `/v1/rules?cursor=${Buffer.from('nonsense').toString('base64url')}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'bad_cursor');
  });

  test(`[${engine}] listEnabledRules gives the router the enabled rules in order, parsed`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    await createUser(h, { id: 'u1' });
    await putRule(h, 'second', { position: 2, recipients: { users: ['u1'] } });
    await putRule(h, 'off', { position: 1, enabled: false });
    await putRule(h, 'first', {
      position: 1,
      match: { types: ['x.*'], sources: [source.id], severities: ['critical'] },
    });
    const rules = await listEnabledRules(h.store.db);
    assert.deepEqual(
      rules.map((r) => r.id),
      ['first', 'second'],
    );
    const first = rules[0]!;
    assert.equal(first.enabled, true);
    assert.equal(first.position, 1);
    assert.equal(typeof first.created_at, 'number');
    assert.deepEqual(first.match, { types: ['x.*'], sources: [source.id], severities: ['critical'] });
    assert.deepEqual(rules[1]!.recipients, { users: ['u1'] });
    assert.deepEqual(first.channels, ['inapp']);
  });

  test(`[${engine}] deletes a rule and answers 404 afterwards`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await putRule(h, 'gone');
    assert.equal((await h.api('DELETE', '/v1/rules/gone')).status, 204);
    for (const method of ['GET', 'DELETE']) {
      const res = await h.api(method, '/v1/rules/gone');
      assert.equal(res.status, 404);
      assert.equal(res.body.code, 'not_found');
    }
    assert.deepEqual(await listEnabledRules(h.store.db), []);
  });

  test(`[${engine}] rules need the admin token`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    assert.equal((await h.api('GET', '/v1/rules', undefined, null)).status, 401);
    assert.equal((await h.api('PUT', '/v1/rules/r', ruleBody(), source.api_key)).status, 403);
  });
}
