import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import type { Engine } from '../src/db/engine.ts';
import { STREAMS_PER_USER } from '../src/notifications/hub.ts';
import type { Notification } from '../src/notifications/notifications.present.ts';
import { redactAccessToken } from '../src/notifications/stream.ts';
import { type CreatedSource, createSource, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, waitFor } from './helpers.ts';

/** An open SSE connection read with eventsource-parser; `next()` waits for the next frame. */
interface Stream {
  status: number;
  contentType: string | null;
  retry: number | undefined;
  next(): Promise<EventSourceMessage & { body: Notification }>;
  /** Resolves when the server has ended the response. */
  ended: Promise<void>;
  close(): void;
}

async function openStream(
  base: string,
  token: string | null,
  options: { headers?: Record<string, string>; query?: string } = {},
) {
  const controller = new AbortController();
  const headers: Record<string, string> = { ...options.headers };
  if (token !== null) headers['authorization'] = `Bearer ${token}`;
  const response = await fetch(`${base}/v1/me/stream${options.query ?? ''}`, {
    headers,
    signal: controller.signal,
  });
  const frames: EventSourceMessage[] = [];
  let read = 0;
  const stream: Stream = {
    status: response.status,
    contentType: response.headers.get('content-type'),
    retry: undefined,
    async next() {
      const frame = await waitFor(() => frames[read]);
      read++;
      return { ...frame, body: JSON.parse(frame.data) as Notification };
    },
    ended: Promise.resolve(),
    close: () => controller.abort(),
  };
  const parser = createParser({
    onEvent: (frame) => frames.push(frame),
    onRetry: (ms) => {
      stream.retry = ms;
    },
  });
  stream.ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body!) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // Aborted by the test.
    }
  })();
  openStreams.add(stream);
  return stream;
}

// Streams still open when a test ends are closed, so a failing assertion does not leave a socket hanging.
const openStreams = new Set<Stream>();
function closeAll() {
  for (const s of openStreams) s.close();
  openStreams.clear();
}

/** Publishes an event for `userIds` through the API; returns its id. */
async function publish(
  h: TestHerald,
  source: CreatedSource,
  userIds: string[],
  title = 'Something happened',
) {
  const response = await h.app.inject({
    method: 'POST',
    url: '/v1/events',
    headers: { authorization: `Bearer ${source.api_key}`, 'content-type': 'application/json' },
    payload: JSON.stringify({ type: 'case.updated', title, recipients: { users: userIds } }),
  });
  assert.equal(response.statusCode, 202, response.body);
  return response.json().id as string;
}

async function setup(t: TestContext, engine: Engine) {
  const h = await startHerald(t, engine);
  t.after(closeAll);
  const base = await h.listen();
  const source = await createSource(h);
  const user = await createUser(h);
  return { h, base, source, userId: user.id, token: await userToken(h, user.id) };
}

for (const engine of ENGINES) {
  test(`[${engine}] a new notification arrives on the stream as a \`notification\` event`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const stream = await openStream(base, token);
    assert.equal(stream.status, 200);
    assert.match(stream.contentType ?? '', /^text\/event-stream/);

    const eventId = await publish(h, source, [userId], 'PO 4711 needs approval');
    const frame = await stream.next();
    assert.equal(frame.event, 'notification');
    assert.equal(frame.body.event_id, eventId);
    assert.equal(frame.body.title, 'PO 4711 needs approval');
    assert.equal(frame.body.state, 'unread');
    const row = await h.store.db
      .selectFrom('notifications')
      .selectAll()
      .where('id', '=', frame.body.id)
      .executeTakeFirstOrThrow();
    assert.equal(frame.id, String(row.seq));
    assert.equal(stream.retry, 2000);
  });

  test(`[${engine}] one user holds at most ${STREAMS_PER_USER} streams: one more ends their oldest`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const streams = [];
    for (let i = 0; i <= STREAMS_PER_USER; i++) streams.push(await openStream(base, token));
    assert.ok(streams.every((s) => s.status === 200));
    await streams[0]!.ended;
    const eventId = await publish(h, source, [userId]);
    for (const stream of streams.slice(1)) assert.equal((await stream.next()).body.event_id, eventId);
    assert.equal(
      (await h.app.inject({ method: 'GET', url: '/metrics' })).body.match(
        /^herald_stream_clients (\d+)/m,
      )?.[1],
      String(STREAMS_PER_USER),
    );
  });

  test(`[${engine}] a state change arrives as \`notification.updated\``, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const stream = await openStream(base, token);
    await publish(h, source, [userId]);
    const created = await stream.next();

    const patch = await h.api('PATCH', `/v1/me/notifications/${created.body.id}`, { state: 'read' }, token);
    assert.equal(patch.status, 200);
    const updated = await stream.next();
    assert.equal(updated.event, 'notification.updated');
    assert.equal(updated.body.id, created.body.id);
    assert.equal(updated.body.state, 'read');
    assert.ok(Number(updated.id) > Number(created.id));
  });

  test(`[${engine}] reconnecting with Last-Event-ID replays only what was missed, in order`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const first = await openStream(base, token);
    await publish(h, source, [userId], 'seen');
    const seen = await first.next();
    first.close();

    // While disconnected: one new notification, and a change to the one already seen.
    await publish(h, source, [userId], 'missed');
    await waitFor(
      async () =>
        (await h.api('GET', '/v1/me/notifications/unread-count', undefined, token)).body.unread === 2,
    );
    await h.api('PATCH', `/v1/me/notifications/${seen.body.id}`, { state: 'archived' }, token);

    const again = await openStream(base, token, { headers: { 'last-event-id': seen.id! } });
    const missed = await again.next();
    assert.deepEqual([missed.event, missed.body.title], ['notification', 'missed']);
    const archived = await again.next();
    assert.deepEqual(
      [archived.event, archived.body.id, archived.body.state],
      ['notification.updated', seen.body.id, 'archived'],
    );

    // Frames come in stream order, so had anything else been replayed it would come before this one.
    await publish(h, source, [userId], 'live');
    const live = await again.next();
    assert.deepEqual([live.event, live.body.title], ['notification', 'live']);
  });

  test(`[${engine}] under concurrent changes every notification reaches the stream once, in order`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const stream = await openStream(base, token);
    const readAll = () => h.api('POST', '/v1/me/notifications/read-all', undefined, token);
    const work = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => publish(h, source, [userId], `n${i}`)),
      ...Array.from({ length: 5 }, readAll),
    ]);
    const published = new Set(work.filter((w) => typeof w === 'string'));
    // A last notification marks the end: frames come in stream order, so everything else is before it.
    const sentinel = await publish(h, source, [userId], 'last');

    const created: string[] = [];
    let last = 0;
    for (;;) {
      const frame = await stream.next();
      assert.ok(Number(frame.id) > last, 'stream positions only grow');
      last = Number(frame.id);
      if (frame.body.event_id === sentinel) break;
      if (frame.event === 'notification') created.push(frame.body.event_id);
      else assert.ok(created.includes(frame.body.event_id), 'an update follows the notification it changes');
    }
    assert.equal(created.length, published.size, 'no notification twice');
    assert.deepEqual(new Set(created), published);
  });

  test(`[${engine}] a browser may send the token and the last event id in the query`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    await publish(h, source, [userId], 'one');
    await publish(h, source, [userId], 'two');
    const rows = await waitFor(async () => {
      const list = await h.api('GET', '/v1/me/notifications', undefined, token);
      return list.body.items.length === 2 ? list.body.items : undefined;
    });
    const older = rows.find((n: { title: string }) => n.title === 'one');
    const seq = await h.store.db
      .selectFrom('notifications')
      .select('seq')
      .where('id', '=', older.id)
      .executeTakeFirstOrThrow();

    const stream = await openStream(base, null, { query: `?access_token=${token}&last_event_id=${seq.seq}` });
    assert.equal(stream.status, 200);
    const frame = await stream.next();
    assert.equal(frame.body.title, 'two');
  });

  test(`[${engine}] a stream carries only its own user's notifications`, async (t) => {
    const { h, base, source, userId, token } = await setup(t, engine);
    const other = await createUser(h);
    const stream = await openStream(base, token);
    await publish(h, source, [other.id], 'not yours');
    await publish(h, source, [other.id, userId], 'shared');
    const frame = await stream.next();
    assert.equal(frame.body.title, 'shared');
  });

  test(`[${engine}] the stream refuses missing, non-user and revoked credentials and a bad Last-Event-ID`, async (t) => {
    const { h, base, userId, token } = await setup(t, engine);
    const none = await openStream(base, null);
    assert.equal(none.status, 401);
    const admin = await h.api('GET', '/v1/me/stream');
    assert.equal(admin.status, 403);
    const bad = await openStream(base, token, { headers: { 'last-event-id': 'yesterday' } });
    assert.equal(bad.status, 400);

    const tokens = await h.api('GET', `/v1/users/${userId}/tokens`);
    await h.api('DELETE', `/v1/users/${userId}/tokens/${tokens.body.items[0].id}`);
    assert.equal((await openStream(base, token)).status, 401);
  });

  test(`[${engine}] an open stream ends when its token is revoked`, async (t) => {
    const { h, base, userId, token } = await setup(t, engine);
    const stream = await openStream(base, token);
    const tokens = await h.api('GET', `/v1/users/${userId}/tokens`);
    await h.api('DELETE', `/v1/users/${userId}/tokens/${tokens.body.items[0].id}`);
    await stream.ended;
  });

  test(`[${engine}] streams are counted, cleaned up on disconnect and ended on shutdown`, async (t) => {
    const { h, base, token } = await setup(t, engine);
    const gauge = async () => (await h.deps.metrics.streamClients.get()).values[0]?.value ?? 0;
    const one = await openStream(base, token);
    const two = await openStream(base, token);
    await waitFor(async () => (await gauge()) === 2);

    one.close();
    await waitFor(async () => (await gauge()) === 1);
    await h.close();
    await two.ended;
    assert.equal(await gauge(), 0);
  });
}

test('the access token in a stream URL is masked in request logs', () => {
  assert.equal(
    redactAccessToken('/v1/me/stream?last_event_id=7&access_token=hrd_usr_secret&x=1'),
    '/v1/me/stream?last_event_id=7&access_token=[redacted]&x=1',
  );
  assert.equal(redactAccessToken('/v1/me/stream?ACCESS_TOKEN=abc'), '/v1/me/stream?ACCESS_TOKEN=[redacted]');
  assert.equal(redactAccessToken('/v1/me/notifications'), '/v1/me/notifications');
});
