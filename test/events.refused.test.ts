import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromNative } from '../src/events/normalize.ts';
import { MAX_JSON_DEPTH } from '../src/http/json.ts';
import { createSource } from './factories.ts';
import { ENGINES, startHerald, type TestHerald } from './helpers.ts';

const LEAP = '2016-12-31T23:59:60Z';

/** Arrays nested `levels` deep, as JSON text (JSON.stringify itself would overflow the stack). */
const arrays = (levels: number) => '['.repeat(levels) + ']'.repeat(levels);
/** `{"a":{"a":...{}}}`, `levels` objects deep, as JSON text. */
const objects = (levels: number) => '{"a":'.repeat(levels - 1) + '{}' + '}'.repeat(levels - 1);

async function post(
  h: TestHerald,
  key: string,
  url: string,
  payload: string,
  headers: Record<string, string> = {},
) {
  const response = await h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    payload,
  });
  return { status: response.statusCode, body: response.json() };
}

/** Asserts a 400 `validation_failed` whose first problem names `field`. */
function refused(res: { status: number; body: any }, field: string, what: string) {
  assert.equal(res.status, 400, `${what}: ${JSON.stringify(res.body).slice(0, 300)}`);
  assert.equal(res.body.code, 'validation_failed', what);
  assert.equal(res.body.errors[0].field, field, what);
}

const CE = { specversion: '1.0', id: 'ce-1', source: '/erp', type: 'po.created' };
const binary = (headers: Record<string, string>) => ({
  'ce-specversion': '1.0',
  'ce-id': 'ce-b',
  'ce-source': '/erp',
  'ce-type': 'po.created',
  ...headers,
});

for (const engine of ENGINES) {
  test(`[${engine}] a date-time that is no time within the years 0001-9999 is refused, naming the field`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    const native = (event: object) =>
      post(h, key, '/v1/events', JSON.stringify({ type: 'po.created', ...event }));
    refused(await native({ time: LEAP }), 'time', 'leap second');
    refused(await native({ due_at: LEAP }), 'due_at', 'leap second due');
    refused(await native({ due_at: '9999-12-31T23:59:59-23:59' }), 'due_at', 'past year 9999 in UTC');
    refused(await native({ time: '0000-06-01T00:00:00Z' }), 'time', 'year 0');
    refused(await native({ time: '2020-01-01T00:00:00Z[Europe/Paris]' }), 'time', 'RFC 9557 suffix');
    const structured = await post(h, key, '/v1/events', JSON.stringify({ ...CE, time: LEAP }), {
      'content-type': 'application/cloudevents+json',
    });
    refused(structured, 'time', 'structured CloudEvent');
    refused(
      await post(h, key, '/v1/events', '{}', binary({ 'ce-time': LEAP })),
      'header.time',
      'binary CloudEvent',
    );

    // What RFC 3339 allows and JavaScript can hold is still taken, and stored as the same instant.
    const ok = await native({ time: '2016-12-31T23:59:59.999-01:00', due_at: '9999-12-31T23:59:59Z' });
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    const stored = (await h.api('GET', `/v1/events/${ok.body.id}`)).body;
    assert.equal(stored.time, '2017-01-01T00:59:59.999Z');
    assert.equal(stored.due_at, '9999-12-31T23:59:59.000Z');
    assert.equal((await h.api('GET', '/v1/events')).body.items.length, 1);
  });

  test(`[${engine}] a batch with a bad date-time answers that item alone`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    const events = [
      { type: 'a.b' },
      { type: 'a.b', time: LEAP },
      { type: 'a.b', due_at: LEAP },
      { type: 'a.c' },
    ];
    const res = await post(h, key, '/v1/events/batch', JSON.stringify({ events }));
    assert.equal(res.status, 200);
    assert.deepEqual(
      res.body.items.map((i: { status: number }) => i.status),
      [202, 400, 400, 202],
    );
    assert.equal(res.body.items[1].error.errors[0].field, 'events.1.time');
    assert.equal(res.body.items[2].error.errors[0].field, 'events.2.due_at');

    const ce = await post(
      h,
      key,
      '/v1/events/batch',
      JSON.stringify([
        { ...CE, id: 'x1' },
        { ...CE, id: 'x2', time: LEAP },
      ]),
      { 'content-type': 'application/cloudevents-batch+json' },
    );
    assert.deepEqual(
      ce.body.items.map((i: { status: number }) => i.status),
      [202, 400],
    );
  });

  test(`[${engine}] an event that cannot be made into a row fails alone, not the group it is committed with`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const source = await createSource(h);
    const good = fromNative({ type: 'a.b', id: 'good' }, source.id, undefined);
    // No request can carry a cycle; it stands for anything that makes building the row throw.
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const bad = { ...fromNative({ type: 'a.b', id: 'bad' }, source.id, undefined), data: cyclic };
    const also = fromNative({ type: 'a.b', id: 'also' }, source.id, undefined);
    // Submitted in one tick: the three requests share one group commit.
    const [alone, mixed, other] = await Promise.all([
      h.deps.ingest.submit([bad]),
      h.deps.ingest.submit([good, bad]),
      h.deps.ingest.submit([also]),
    ]);
    assert.equal(alone[0]!.ok, false);
    assert.deepEqual(
      mixed.map((r) => r.ok),
      [true, false],
    );
    assert.equal(other[0]!.ok, true);
    const ids = (await h.api('GET', '/v1/events')).body.items.map(
      (e: { source_event_id: string }) => e.source_event_id,
    );
    assert.deepEqual(ids.sort(), ['also', 'good']);
  });

  test(`[${engine}] events sent at once with bad ones are accepted, whatever is wrong with the others`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    const sends = [
      post(h, key, '/v1/events', JSON.stringify({ type: 'a.b', id: 'ok-1' })),
      post(h, key, '/v1/events', JSON.stringify({ type: 'a.b', time: LEAP })),
      post(h, key, '/v1/events', `{"type":"a.b","data":${arrays(20_000)}}`),
      post(h, key, '/v1/events', JSON.stringify({ type: 'a.b', id: 'y\ud800' })),
      post(h, key, '/v1/events', '{}', binary({ 'ce-time': LEAP })),
      post(
        h,
        key,
        '/v1/events/batch',
        JSON.stringify({
          events: [
            { type: 'a.b', id: 'ok-2' },
            { type: 'a.b', due_at: LEAP },
          ],
        }),
      ),
      post(h, key, '/v1/events', JSON.stringify({ type: 'a.b', id: 'ok-3' })),
    ];
    const statuses = (await Promise.all(sends)).map((r) => r.status);
    assert.deepEqual(statuses, [202, 400, 400, 400, 400, 200, 202]);
    const stored = (await h.api('GET', '/v1/events')).body.items.map(
      (e: { source_event_id: string }) => e.source_event_id,
    );
    assert.deepEqual(stored.sort(), ['ok-1', 'ok-2', 'ok-3']);
  });

  test(`[${engine}] JSON nested deeper than the limit is refused in every way an event is sent`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    refused(await post(h, key, '/v1/events', arrays(20_000)), '0', 'the body itself');
    refused(await post(h, key, '/v1/events', `{"type":"a.b","data":${arrays(20_000)}}`), 'data', 'data');
    refused(
      await post(h, key, '/v1/events', `{"type":"a.b","data":${objects(5_000)}}`),
      'data',
      'data objects',
    );
    refused(await post(h, key, '/v1/events', `{"type":"a.b","title":${objects(5_000)}}`), 'title', 'title');
    const extension = `{"specversion":"1.0","id":"c","source":"/s","type":"a.b","deep":${arrays(20_000)}}`;
    refused(
      await post(h, key, '/v1/events', extension, { 'content-type': 'application/cloudevents+json' }),
      'deep',
      'CloudEvents extension',
    );
    refused(await post(h, key, '/v1/events', objects(5_000), binary({})), 'body.a', 'binary-mode JSON data');
    const batch = await post(
      h,
      key,
      '/v1/events/batch',
      `{"events":[{"type":"a.b"},{"type":"a.b","data":${arrays(20_000)}},{"type":"a.c"}]}`,
    );
    assert.deepEqual(
      batch.body.items.map((i: { status: number }) => i.status),
      [202, 400, 202],
    );
    assert.equal(batch.body.items[1].error.errors[0].field, 'events.1.data');
    const ceBatch = await post(h, key, '/v1/events/batch', `[${extension}]`, {
      'content-type': 'application/cloudevents-batch+json',
    });
    assert.equal(ceBatch.body.items[0].status, 400);
  });

  test(`[${engine}] JSON nested up to the limit is stored and read back whole`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    // The event is the first level: its data may nest one level less than the limit.
    const deepest = arrays(MAX_JSON_DEPTH - 1);
    const ok = await post(h, key, '/v1/events', `{"type":"a.b","data":${deepest}}`);
    assert.equal(ok.status, 202, JSON.stringify(ok.body));
    assert.deepEqual((await h.api('GET', `/v1/events/${ok.body.id}`)).body.data, JSON.parse(deepest));
    refused(
      await post(h, key, '/v1/events', `{"type":"a.b","data":${arrays(MAX_JSON_DEPTH)}}`),
      'data',
      'one level more',
    );
  });

  test(`[${engine}] text that is not well-formed Unicode is refused, so no retry can turn into a conflict`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const { api_key: key } = await createSource(h);
    // JSON.stringify writes a lone surrogate as the escape `\ud800`, as a client would send it.
    const send = (event: object) => post(h, key, '/v1/events', JSON.stringify({ type: 't.a', ...event }));
    refused(await send({ id: 'y\ud800' }), 'id', 'id');
    refused(await send({ title: 'a\udfffb' }), 'title', 'title');
    refused(await send({ data: { list: ['ok', 'x\ud800'] } }), 'data.list.1', 'a value in data');
    const key_ = await send({ data: { ['k\udc00']: 1 } });
    refused(key_, 'data', 'a key in data');
    assert.match(key_.body.errors[0].message, /key/);
    const batch = await post(
      h,
      key,
      '/v1/events/batch',
      JSON.stringify({ events: [{ type: 't.a', id: 'z\ud800' }, { type: 't.a' }] }),
    );
    assert.deepEqual(
      batch.body.items.map((i: { status: number }) => i.status),
      [400, 202],
    );
    assert.equal(batch.body.items[0].error.errors[0].field, 'events.0.id');
    // Nothing was stored in its place: the replacement character is a different, new id.
    assert.equal((await send({ id: 'y\ufffd' })).status, 202);
    // NUL stays refused outside data, and kept inside it.
    refused(await send({ subject: 'a\u0000' }), 'subject', 'NUL in subject');
    assert.equal((await send({ data: { note: 'a\u0000b' } })).status, 202);
  });
}
