import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createSource, publishEvent, uniqueId } from './factories.ts';
import { ENGINES, routeAll, startHerald, type TestHerald } from './helpers.ts';
import { startReceiver } from './receiver.ts';
import { eventOf, explain, people, reasons, rule } from './routing.fixtures.ts';

/*
 * Operators' expressions (rule conditions, endpoint filters and transforms) cannot hold up Herald's threads:
 * regexes run in linear time (with the i flag rewritten into classes of case variants: test/regex-case.test.ts),
 * those that cannot are refused when saved and fail safely when built later, loops run out of time, and a
 * failing filter or transform fails its own delivery for good. Nothing here measures time; without the limits
 * these tests would hang.
 */

const catastrophic = `$match("${'a'.repeat(40)}!", /(a+)+$/)`;
const words = '$match(data.text, /^(\\w+\\s?)*$/)';
// Built from the picture with the i flag, so V8 backtracks on it: n adjacent names take O(length^n) steps.
const manyNames = `$toMillis(data.text, "${'[FNn][MNn]'.repeat(6)}") > 0`;

async function ruleBook(h: TestHerald, conditions: Record<string, string>): Promise<void> {
  await people(h, { id: 'ops' });
  let position = 0;
  for (const [id, condition] of Object.entries(conditions)) {
    position++;
    await rule(h, id, {
      position,
      continue: true,
      match: { types: ['ticket.*'], condition },
      recipients: { users: ['ops'] },
    });
  }
}

/** A webhook endpoint for `case.*` events; fails the test when it is refused. */
async function putEndpoint(h: TestHerald, url: string, extra: Record<string, unknown> = {}): Promise<string> {
  const id = uniqueId('ep');
  const res = await h.api('PUT', `/v1/endpoints/${id}`, { url, types: ['case.*'], ...extra });
  assert.equal(res.status, 201, res.text);
  return id;
}

async function deliveriesTo(h: TestHerald, endpointId: string) {
  const res = await h.api('GET', `/v1/deliveries?limit=200&endpoint_id=${endpointId}`);
  assert.equal(res.status, 200, res.text);
  return res.body.items as { status: string; attempt_count: number; last_error: string | null }[];
}

for (const engine of ENGINES) {
  test(`[${engine}] conditions with catastrophic regexes are saved and run in linear time, so explain and routing answer`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key } = await createSource(h, { id: 'erp' });
    await ruleBook(h, { catastrophic, words });
    const crafted = { type: 'ticket.created', data: { text: `${'word '.repeat(5000)}!` } };
    assert.deepEqual(reasons(await explain(h, { ...crafted, source: 'erp' })), {
      catastrophic: 'condition_false',
      words: 'condition_false',
    });
    const plain = { type: 'ticket.created', data: { text: 'hello world' } };
    assert.deepEqual(reasons(await explain(h, { ...plain, source: 'erp' })), {
      catastrophic: 'condition_false',
      words: 'matched',
    });

    const [craftedId, plainId] = [
      await publishEvent(h, api_key, crafted),
      await publishEvent(h, api_key, plain),
    ];
    await routeAll(h);
    assert.deepEqual((await eventOf(h, craftedId!)).routing.rules_matched, []);
    assert.deepEqual((await eventOf(h, plainId!)).routing.rules_matched, ['words']);
  });

  test(`[${engine}] regexes the linear engine cannot run are refused when a rule or an endpoint is saved, pointing at them`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    await people(h, { id: 'ops' });
    for (const [condition, regex] of [
      ['$contains(data.text, /(a)\\1/)', '/(a)\\1/'],
      // The i flag is rewritten away, but no class makes a backreference compare case-insensitively.
      ['$contains(data.text, /(\\w)\\1/i)', '/(\\w)\\1/i'],
      ['$replace(title, /x(?=y)/, "z") = title', '/x(?=y)/'],
      ['$contains(title, /(?<=re: )urgent/i)', '/(?<=re: )urgent/i'],
    ] as const) {
      const res = await h.api('PUT', '/v1/rules/r1', {
        match: { types: ['ticket.*'], condition },
        recipients: { users: ['ops'] },
        channels: ['inapp'],
      });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.code, 'validation_failed');
      const [problem] = res.body.errors;
      assert.equal(problem.field, 'body.match.condition');
      assert.ok(
        problem.message.startsWith(`regular expression ${regex} cannot run in linear time`),
        problem.message,
      );
      assert.match(problem.message, /backreferences, lookahead, lookbehind .* at character \d+$/);
    }
    assert.equal((await h.api('GET', '/v1/rules/r1')).status, 404);

    for (const field of ['filter', 'transform']) {
      const res = await h.api('PUT', `/v1/endpoints/${uniqueId('ep')}`, {
        url: 'http://127.0.0.1:9/hook',
        types: ['case.*'],
        [field]: '$contains(data.title, /(a|b)\\1/)',
      });
      assert.equal(res.status, 400, res.text);
      assert.equal(res.body.errors[0].field, `body.${field}`);
      assert.match(res.body.errors[0].message, /cannot run in linear time .*\(at character \d+\)$/);
    }
  });

  test(`[${engine}] conditions with the i flag are saved and match whatever the case, in explain and in routing`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key } = await createSource(h, { id: 'erp' });
    await ruleBook(h, {
      timeout: '$match(data.text, /time-?out/i)',
      delay: '$contains(data.text, /DÉLAI/i)',
    });
    const texts = ['Connection TIMEOUT after 30 s', 'délai dépassé', 'Time-Out', 'all fine'];
    const expected = [['timeout'], ['delay'], ['timeout'], []];
    for (const [i, text] of texts.entries()) {
      const explained = await explain(h, { type: 'ticket.created', source: 'erp', data: { text } });
      const matched = Object.entries(reasons(explained)).filter(([, reason]) => reason === 'matched');
      assert.deepEqual(
        matched.map(([id]) => id),
        expected[i],
        text,
      );
    }

    const ids = [];
    for (const text of texts)
      ids.push(await publishEvent(h, api_key, { type: 'ticket.created', data: { text } }));
    await routeAll(h);
    for (const [i, id] of ids.entries()) {
      assert.deepEqual((await eventOf(h, id)).routing.rules_matched, expected[i], texts[i]);
    }
  });

  test(`[${engine}] an endpoint filter with the i flag is saved and sends the events it matches whatever the case`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key } = await createSource(h);
    const receiver = await startReceiver(t);
    await putEndpoint(h, receiver.url, { filter: '$contains(data.title, /\\burgent\\b/i)' });
    for (const title of ['URGENT: disk full', 'Weekly report', 'Not so Urgent', 'Urgently']) {
      await publishEvent(h, api_key, { type: 'case.created', title, data: {} });
    }
    await routeAll(h);
    while ((await h.workers.dispatcher.runOnce()) > 0);
    const sent = receiver.requests.map((r) => JSON.parse(r.body).data.title).sort();
    assert.deepEqual(sent, ['Not so Urgent', 'URGENT: disk full']);
  });

  test(`[${engine}] a regex built at run time, or a picture that would backtrack, skips its rule with the reason`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key } = await createSource(h, { id: 'erp' });
    await ruleBook(h, {
      evaluated: '$eval("$contains(data.text, /(a)\\\\1/)")',
      pictured: manyNames,
      plain: '$contains(data.text, "a")',
    });
    const event = { type: 'ticket.created', data: { text: `${'a'.repeat(60)}1` } };
    const explained = await explain(h, { ...event, source: 'erp' });
    assert.deepEqual(reasons(explained), {
      evaluated: 'condition_error',
      pictured: 'condition_error',
      plain: 'matched',
    });
    const detail = Object.fromEntries(
      explained.rules.map((r: { rule: string; detail: string }) => [r.rule, r.detail]),
    );
    assert.match(detail.evaluated, /Cannot be executed in linear time/);
    assert.match(detail.pictured, /Evaluation timeout/);

    const id = await publishEvent(h, api_key, event);
    await routeAll(h);
    const { routing } = await eventOf(h, id);
    assert.deepEqual(routing.rules_matched, ['plain']);
    assert.deepEqual(
      routing.rules_skipped.map((r: { rule: string; reason: string }) => [r.rule, r.reason]),
      [
        ['evaluated', 'condition_error'],
        ['pictured', 'condition_error'],
      ],
    );
  });

  test(`[${engine}] a filter or transform that loops or throws fails its delivery for good, and other endpoints get theirs`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key } = await createSource(h);
    const receiver = await startReceiver(t);
    const loop = '($l := function($i){ $i < 1000000000 ? $l($i + 1) : true }; $l(0))';
    const loopingFilter = await putEndpoint(h, receiver.url, { filter: loop });
    const loopingTransform = await putEndpoint(h, receiver.url, { transform: loop });
    const throwing = await putEndpoint(h, receiver.url, { transform: '$error("boom")' });
    const plain = await putEndpoint(h, receiver.url);
    for (const n of [1, 2]) {
      await publishEvent(h, api_key, { type: 'case.created', title: `Case ${n}`, data: { n } });
    }
    await routeAll(h);
    while ((await h.workers.dispatcher.runOnce()) > 0);

    const plainDeliveries = await deliveriesTo(h, plain);
    assert.deepEqual(
      plainDeliveries.map((d) => d.status),
      ['succeeded', 'succeeded'],
    );
    assert.equal(receiver.requests.length, 2, 'only the plain endpoint was sent to');
    for (const [endpoint, error] of [
      [loopingFilter, /^not sent: filter failed: (not run: earlier in this batch, )?Evaluation timeout/],
      [
        loopingTransform,
        /^not sent: transform failed: (not run: earlier in this batch, )?Evaluation timeout/,
      ],
      [throwing, /^not sent: transform failed: boom\b/],
    ] as const) {
      for (const delivery of await deliveriesTo(h, endpoint)) {
        assert.equal(delivery.status, 'dead', JSON.stringify(delivery));
        assert.equal(delivery.attempt_count, 1);
        assert.match(delivery.last_error ?? '', error);
      }
    }
  });
}
