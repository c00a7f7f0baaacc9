import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { createGroup, createSource, createUser, uniqueId, userToken } from './factories.ts';
import { ENGINES, routeAll, startHerald, type TestHerald } from './helpers.ts';

/*
 * The OpenAPI document served at /openapi.json must say what Herald answers. Fastify serializes each answer
 * with its route's response schema, which leaves out anything the schema does not declare: so besides the
 * document's own completeness, a walk through the API checks that every answer carries all its handler
 * returned, with a status the document lists.
 */

interface Operation {
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { content?: Record<string, unknown> }>;
}
type Document = { paths: Record<string, Record<string, Operation>> };

const ORIGIN = 'http://127.0.0.1:9';
const HOUR = 3_600_000;

async function openApi(h: TestHerald): Promise<Document> {
  const res = await h.api('GET', '/openapi.json', undefined, null);
  assert.equal(res.status, 200, res.text);
  return res.body as Document;
}

function successes(operation: Operation): string[] {
  return Object.keys(operation.responses).filter((status) => /^2\d\d$/.test(status));
}

/** A route as Fastify names it (`/v1/users/:id`, `/v1/actions/*`), as the document does (`/v1/users/{id}`). */
const documentedPath = (route: string) => route.replace(/:(\w+)/g, '{$1}').replace(/\*$/, '{token}');

interface Answer {
  method: string;
  path: string;
  status: number;
  contentType: string;
  text: string;
  /** What the handler returned, as JSON would carry it; absent when it sent text (HTML, metrics). */
  returned?: unknown;
}

/** Records every answer Herald gives from now on, with what its handler returned before serialization. */
function recordAnswers(h: TestHerald): Answer[] {
  const answers: Answer[] = [];
  const returned = new Map<string, unknown>();
  h.app.addHook('preSerialization', async (request, _reply, payload) => {
    returned.set(request.id, JSON.parse(JSON.stringify(payload)));
    return payload;
  });
  h.app.addHook('onSend', async (request, reply, payload) => {
    const route = request.routeOptions.url;
    if (route !== undefined) {
      answers.push({
        method: request.method.toLowerCase(),
        path: documentedPath(route),
        status: reply.statusCode,
        contentType: String(reply.getHeader('content-type') ?? ''),
        text: typeof payload === 'string' ? payload : '',
        ...(returned.has(request.id) ? { returned: returned.get(request.id) } : {}),
      });
    }
    return payload;
  });
  return answers;
}

/** A CloudEvent in the JSON format (structured mode), with a new id. */
const cloudEvent = (type = 'order.created') => ({
  specversion: '1.0',
  id: uniqueId('ce'),
  source: '/erp',
  type,
});

async function send(
  h: TestHerald,
  url: string,
  key: string,
  payload: string,
  headers: Record<string, string>,
) {
  const res = await h.app.inject({
    method: 'POST',
    url,
    headers: { authorization: `Bearer ${key}`, ...headers },
    payload,
  });
  return { status: res.statusCode, body: res.body === '' ? undefined : res.json() };
}

test('every operation documents a success answer, and every success answer but 204 documents its body', async (t) => {
  const h = await startHerald(t, 'sqlite', { workers: false });
  const doc = await openApi(h);
  const problems: string[] = [];
  let operations = 0;
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(methods)) {
      operations++;
      const name = `${method.toUpperCase()} ${path}`;
      const statuses = successes(operation);
      if (statuses.length === 0) problems.push(`${name}: no 2xx answer`);
      for (const status of statuses) {
        const content = operation.responses[status]!.content;
        if (status === '204' && content !== undefined) problems.push(`${name} 204: a body`);
        if (status !== '204' && Object.keys(content ?? {}).length === 0)
          problems.push(`${name} ${status}: no body`);
      }
      if (method === 'delete' && statuses.join() !== '204') {
        problems.push(`${name}: answers ${statuses.join(', ')}, not 204`);
      }
    }
  }
  assert.ok(operations > 100, `only ${operations} operations`);
  assert.deepEqual(problems, []);
});

for (const engine of ENGINES) {
  test(`[${engine}] publishing takes every media type the document lists for it, and refuses others with 415`, async (t) => {
    const h = await startHerald(t, engine, { workers: false });
    const doc = await openApi(h);
    const source = await createSource(h);
    const json = (body: unknown, contentType: string) => ({
      payload: JSON.stringify(body),
      headers: { 'content-type': contentType },
    });
    const samples: Record<string, Record<string, { payload: string; headers: Record<string, string> }>> = {
      '/v1/events': {
        'application/json': json({ type: 'order.created' }, 'application/json'),
        'application/cloudevents+json': json(cloudEvent(), 'application/cloudevents+json'),
        // Binary mode: the attributes in headers, the data as the body, in any media type.
        '*/*': {
          payload: '<order id="7"/>',
          headers: {
            'content-type': 'application/xml',
            'ce-specversion': '1.0',
            'ce-id': uniqueId('ce'),
            'ce-source': '/erp',
            'ce-type': 'order.created',
          },
        },
      },
      '/v1/events/batch': {
        'application/json': json({ events: [{ type: 'order.created' }, cloudEvent()] }, 'application/json'),
        'application/cloudevents-batch+json': json([cloudEvent()], 'application/cloudevents-batch+json'),
      },
    };
    for (const [path, byType] of Object.entries(samples)) {
      const operation = doc.paths[path]!['post']!;
      assert.deepEqual(Object.keys(operation.requestBody!.content).sort(), Object.keys(byType).sort(), path);
      for (const [mediaType, { payload, headers }] of Object.entries(byType)) {
        const res = await send(h, path, source.api_key, payload, headers);
        assert.ok(successes(operation).includes(String(res.status)), `${path} ${mediaType}: ${res.status}`);
        if (path.endsWith('/batch')) assert.equal(res.body.rejected, 0, JSON.stringify(res.body));
      }
    }
    const refused = [
      ['/v1/events', json([cloudEvent()], 'application/cloudevents-batch+json')],
      ['/v1/events', { payload: 'hello', headers: { 'content-type': 'text/plain' } }],
      ['/v1/events/batch', json(cloudEvent(), 'application/cloudevents+json')],
    ] as const;
    for (const [path, { payload, headers }] of refused) {
      const res = await send(h, path, source.api_key, payload, headers);
      assert.equal(res.status, 415, `${path} ${headers['content-type']}`);
    }
  });

  test(`[${engine}] a walk through the API answers only documented statuses, and every answer carries all its handler returned`, async (t) => {
    const clock = new ManualClock(Date.parse('2026-03-02T09:00:00Z'));
    const h = await startHerald(t, engine, { clock, workers: false });
    // Hooks go on before the first request starts the app.
    const answers = recordAnswers(h);
    const doc = await openApi(h);
    answers.length = 0; // /openapi.json itself is not in the document

    const source = await createSource(h, { callback_url: `${ORIGIN}/callback` });
    const boss = await createUser(h, { email: `${uniqueId('boss')}@example.com` });
    const owner = await createUser(h, { email: `${uniqueId('owner')}@example.com`, manager: boss.id });
    await createGroup(h, uniqueId('grp'), [owner.id, boss.id]);
    await h.api('PUT', '/v1/escalation-policies/late', {
      levels: [{ after: '10m', targets: { managers: true }, channels: ['inapp'] }],
    });
    await h.api('PUT', '/v1/rules/approvals', {
      match: { types: ['approval.*'] },
      recipients: { users: [owner.id] },
      channels: ['inapp', 'email'],
      escalation_policy: 'late',
    });
    const endpoint = uniqueId('ep');
    await h.api('PUT', `/v1/endpoints/${endpoint}`, { url: `${ORIGIN}/hook`, types: ['approval.*'] });
    const token = await userToken(h, owner.id);

    const published = await h.api(
      'POST',
      '/v1/events',
      {
        type: 'approval.requested',
        subject: 'PO-4711',
        severity: 'warning',
        title: 'Approve PO-4711',
        due_at: new Date(clock.now() + 2 * HOUR).toISOString(),
        reminders: ['-1h'],
        actions: [{ id: 'approve', label: 'Approve' }],
        response_policy: { quorum: 1 },
        dedup_key: 'po-4711',
        data: { amount: 12.5, lines: [{ sku: 'A-1', qty: 2 }], note: null },
      },
      source.api_key,
    );
    const id = published.body.id as string;
    await send(
      h,
      '/v1/events',
      source.api_key,
      JSON.stringify({ ...cloudEvent('approval.logged'), tenant: 'emea' }),
      {
        'content-type': 'application/cloudevents+json',
      },
    );
    await h.api(
      'POST',
      '/v1/events/batch',
      { events: [{ type: 'approval.noted' }, { type: 'bad type!' }] },
      source.api_key,
    );
    await routeAll(h);
    clock.advance(1.5 * HOUR);
    while ((await h.workers.timers.runOnce()) > 0);

    const inbox = await h.api('GET', '/v1/me/notifications', undefined, token);
    const mine = inbox.body.items.find((n: { event_id: string }) => n.event_id === id);
    await h.api('POST', `/v1/me/notifications/${mine.id}/actions/approve`, {}, token);

    await h.api('GET', `/v1/events/${id}`);
    await h.api('GET', '/v1/events?limit=2');
    await h.api('GET', '/v1/events', undefined, source.api_key);
    await h.api('POST', '/v1/routing/explain', {
      source: source.id,
      type: 'approval.requested',
      recipients: { users: [owner.id, 'nobody'] },
    });
    const spare = await h.api('POST', `/v1/users/${owner.id}/tokens`, {});
    await h.api('DELETE', `/v1/users/${owner.id}/tokens/${spare.body.id}`);
    await h.api('DELETE', `/v1/endpoints/${endpoint}`);
    await h.api('GET', '/metrics', undefined, null);

    const walked = new Set(answers.map((a) => `${a.method.toUpperCase()} ${a.path}`));
    for (const route of [
      'POST /v1/events',
      'POST /v1/events/batch',
      'GET /v1/events',
      'GET /v1/events/{id}',
      'POST /v1/routing/explain',
      'DELETE /v1/users/{id}/tokens/{tokenId}',
      'DELETE /v1/endpoints/{id}',
      'GET /metrics',
    ]) {
      assert.ok(walked.has(route), `the walk missed ${route}`);
    }
    for (const answer of answers) {
      const name = `${answer.method.toUpperCase()} ${answer.path} ${answer.status}`;
      assert.ok(answer.status < 300, `${name}: ${answer.text}`);
      const operation = doc.paths[answer.path]?.[answer.method];
      assert.ok(operation, `${name}: not in the document`);
      assert.ok(successes(operation).includes(String(answer.status)), `${name}: not a documented answer`);
      if (answer.returned !== undefined && answer.status !== 204) {
        assert.match(answer.contentType, /json/, name);
        assert.deepEqual(
          JSON.parse(answer.text),
          answer.returned,
          `${name}: the answer differs from what was returned`,
        );
      }
    }

    // The walk is worth what it covers: the event it read back had every part of its story.
    const event = answers.find((a) => a.path === '/v1/events/{id}')!.returned as Record<string, any>;
    assert.ok(event.routing.recipient_count >= 1, JSON.stringify(event.routing));
    assert.ok(event.notifications.length >= 1);
    assert.equal(event.responses.length, 1);
    assert.ok(event.write_back !== null);
    assert.ok(event.deliveries.some((d: { endpoint_id: string }) => d.endpoint_id === endpoint));
    assert.ok(event.escalation.steps.length >= 1, JSON.stringify(event.escalation));
  });
}
