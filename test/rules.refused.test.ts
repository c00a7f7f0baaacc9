import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSource } from './factories.ts';
import { ENGINES, startHerald } from './helpers.ts';
import { people } from './routing.fixtures.ts';

const base = { match: { types: ['case.*'] }, recipients: { users: ['u1'] }, channels: ['inapp'] };

for (const engine of ENGINES) {
  test(`[${engine}] a rule with segments, managers, a condition and per-severity channels is saved and read back`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(h, { id: 'u1', roles: ['finance'], attributes: { location: 'berlin', cost_centre: 4711 } });
    const body = {
      name: 'Payment failures',
      position: 5,
      continue: true,
      match: {
        types: ['payment.failed'],
        subjects: ['invoice-*'],
        condition: 'data.amount >= 1000 and data.currency = "EUR"',
      },
      recipients: {
        segments: [{ roles: ['finance'], attributes: { location: 'data.region', cost_centre: 4711 } }],
        managers_of: ['recipients', 'data.owner'],
      },
      channels: ['inapp', 'email'],
      channels_by_severity: { critical: ['inapp', 'sms', 'sms'] },
    };
    const res = await h.api('PUT', '/v1/rules/payments', body);
    assert.equal(res.status, 201, res.text);
    const expected = { ...body, enabled: true, channels_by_severity: { critical: ['inapp', 'sms'] } };
    for (const got of [res.body, (await h.api('GET', '/v1/rules/payments')).body]) {
      const { id, created_at, updated_at, ...rest } = got;
      assert.equal(id, 'payments');
      assert.deepEqual(rest, expected);
    }
  });

  test(`[${engine}] invalid rules are refused when saved, with a message that points at the error`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(h, { id: 'u1', roles: ['finance'], attributes: { location: 'berlin' } });
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [
        { match: { types: ['case.*'], condition: 'data.amount >' } },
        'body.match.condition',
        /does not parse at character \d+: /,
      ],
      [
        { match: { types: ['case.*'], condition: 'data.amount > 10 and (' } },
        'body.match.condition',
        /does not parse at character/,
      ],
      [
        { recipients: { segments: [{ attributes: { location: 'data.' } }] } },
        'body.recipients.segments.0.attributes.location',
        /"data\." is not a path into the event/,
      ],
      [
        { recipients: { segments: [{ attributes: { location: 'data..region' } }] } },
        'body.recipients.segments.0.attributes.location',
        /is not a path/,
      ],
      [{ recipients: { segments: [{}] } }, 'body.recipients.segments.0', /never everyone/],
      [
        { recipients: { segments: [{ attributes: { 'bad name': 'x' } }] } },
        'body.recipients.segments.0.attributes.bad name',
        /attribute name/,
      ],
      [{ recipients: { managers_of: ['recipients'] } }, 'body.recipients', /at least one/],
      [{ recipients: { managers_of: ['owner'] } }, 'body.recipients.managers_of.0', /./],
      [{ recipients: { from_data: ['data.'] } }, 'body.recipients.from_data.0', /./],
      [
        { channels_by_severity: { critical: ['pager'] } },
        'body.channels_by_severity.critical.0',
        /"pager" is not a known channel/,
      ],
      [{ channels_by_severity: { urgent: ['sms'] } }, 'body.channels_by_severity.urgent', /./],
      [{ continue: 'sometimes' }, 'body.continue', /./],
    ];
    for (const [overrides, field, detail] of cases) {
      const res = await h.api('PUT', '/v1/rules/r1', { ...base, ...overrides });
      assert.equal(res.status, 400, `${JSON.stringify(overrides)}: ${res.text}`);
      assert.equal(res.body.code, 'validation_failed');
      const problem = res.body.errors?.find((e: { field: string }) => e.field === field);
      assert.ok(problem, `${JSON.stringify(overrides)} → ${JSON.stringify(res.body.errors)}`);
      assert.match(problem.message, detail, JSON.stringify(problem));
    }
    assert.equal((await h.api('GET', '/v1/rules/r1')).status, 404);
  });

  test(`[${engine}] rules naming roles or attributes nobody has are refused, listing them`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await createSource(h);
    await people(h, { id: 'u1', roles: ['finance'], attributes: { location: 'berlin' } });
    const res = await h.api('PUT', '/v1/rules/r1', {
      ...base,
      recipients: {
        users: ['u1', 'ghost'],
        segments: [{ roles: ['finance', 'finanse'], attributes: { location: 'data.site', locaton: 'x' } }],
      },
    });
    assert.equal(res.status, 400, res.text);
    assert.equal(res.body.code, 'unknown_reference');
    assert.deepEqual(res.body.unknown, {
      users: ['ghost'],
      groups: [],
      roles: ['finanse'],
      attributes: ['locaton'],
    });
    assert.match(res.body.detail, /roles no user holds: "finanse"/);
    assert.match(res.body.detail, /attributes no user has: "locaton"/);
  });
}
