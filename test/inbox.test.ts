import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ManualClock } from '../src/clock.ts';
import { type CreatedSource, createSource, createUser, userToken } from './factories.ts';
import { ENGINES, startHerald, type TestHerald, waitFor, walk } from './helpers.ts';

/** Publishes an event for `userId` through the API and waits until it is in their inbox; returns its row. */
async function notify(
  h: TestHerald,
  source: CreatedSource,
  userId: string,
  fields: Record<string, unknown> = {},
) {
  const response = await h.app.inject({
    method: 'POST',
    url: '/v1/events',
    headers: { authorization: `Bearer ${source.api_key}`, 'content-type': 'application/json' },
    payload: JSON.stringify({
      type: 'case.updated',
      title: 'Case changed',
      recipients: { users: [userId] },
      ...fields,
    }),
  });
  assert.equal(response.statusCode, 202, response.body);
  const eventId = response.json().id as string;
  return waitFor(() =>
    h.store.db
      .selectFrom('notifications')
      .selectAll()
      .where('event_id', '=', eventId)
      .where('user_id', '=', userId)
      .executeTakeFirst(),
  );
}

/** A user with an inbox token. */
async function member(h: TestHerald) {
  const user = await createUser(h);
  return { id: user.id, token: await userToken(h, user.id) };
}

for (const engine of ENGINES) {
  test(`[${engine}] a user lists only their own notifications and gets 404 for anyone else's`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const bob = await member(h);
    const hers = await notify(h, source, alice.id, { title: 'For Alice' });
    await notify(h, source, bob.id, { title: 'For Bob' });

    const list = await h.api('GET', '/v1/me/notifications', undefined, bob.token);
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.items.map((n: { title: string }) => n.title),
      ['For Bob'],
    );

    for (const [method, body] of [
      ['GET', undefined],
      ['PATCH', { state: 'read' }],
    ] as const) {
      const res = await h.api(method, `/v1/me/notifications/${hers.id}`, body, bob.token);
      assert.equal(res.status, 404, `${method}: ${res.text}`);
      assert.equal(res.body.code, 'not_found');
    }
    const mine = await h.api('GET', `/v1/me/notifications/${hers.id}`, undefined, alice.token);
    assert.equal(mine.status, 200);
    assert.equal(mine.body.state, 'unread');
  });

  test(`[${engine}] a notification shows the event it came from`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const row = await notify(h, source, alice.id, {
      type: 'invoice.payment_failed',
      title: 'Payment failed',
      summary: 'Invoice 17 bounced',
      url: 'https://erp.example/invoices/17',
      severity: 'error',
    });
    const res = await h.api('GET', `/v1/me/notifications/${row.id}`, undefined, alice.token);
    assert.equal(res.status, 200);
    assert.deepEqual(
      { ...res.body, created_at: undefined, updated_at: undefined, channels: undefined },
      {
        id: row.id,
        event_id: row.event_id,
        type: 'invoice.payment_failed',
        source: source.id,
        severity: 'error',
        title: 'Payment failed',
        summary: 'Invoice 17 bounced',
        url: 'https://erp.example/invoices/17',
        state: 'unread',
        channels: undefined,
        occurrences: 1,
        data: null,
        created_at: undefined,
        updated_at: undefined,
        read_at: null,
        archived_at: null,
        response: null,
        resolved_at: null,
        resolved_by: null,
        actions: [],
        write_back: null,
        deliveries: [],
      },
    );
    assert.ok(Array.isArray(res.body.channels));
    assert.match(res.body.created_at, /^\d{4}-\d\d-\d\dT/);
  });

  test(`[${engine}] the inbox pages newest first with a cursor`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await notify(h, source, alice.id, { title: `n${i}` })).id);

    const { items, pages } = await walk(h, '/v1/me/notifications', 2, alice.token);
    assert.equal(pages, 3);
    assert.deepEqual(
      items.map((n) => n.id),
      ids.toReversed(),
    );

    const bad = await h.api('GET', '/v1/me/notifications?cursor=not*a*cursor', undefined, alice.token);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'bad_cursor');
  });

  test(`[${engine}] a user marks a notification read, unread and archived, each change audited`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const row = await notify(h, source, alice.id);
    const url = `/v1/me/notifications/${row.id}`;

    const read = await h.api('PATCH', url, { state: 'read' }, alice.token);
    assert.equal(read.status, 200);
    assert.equal(read.body.state, 'read');
    assert.notEqual(read.body.read_at, null);
    const afterRead = await seqOf(h, row.id);
    assert.ok(afterRead > row.seq, 'a change takes a new stream position');

    const again = await h.api('PATCH', url, { state: 'read' }, alice.token);
    assert.equal(again.status, 200);
    assert.equal(await seqOf(h, row.id), afterRead, 'setting the same state changes nothing');

    const archived = await h.api('PATCH', url, { state: 'archived' }, alice.token);
    assert.equal(archived.body.state, 'archived');
    assert.notEqual(archived.body.archived_at, null);
    assert.equal(archived.body.read_at, read.body.read_at);
    const byState = async (state: string) => {
      const res = await h.api('GET', `/v1/me/notifications${state}`, undefined, alice.token);
      return res.body.items.map((n: { id: string }) => n.id);
    };
    assert.deepEqual(await byState(''), []);
    assert.deepEqual(await byState('?state=archived'), [row.id]);
    assert.deepEqual(await byState('?state=all'), [row.id]);
    assert.deepEqual(await byState('?state=unread'), []);

    const unread = await h.api('PATCH', url, { state: 'unread' }, alice.token);
    assert.deepEqual(
      [unread.body.state, unread.body.read_at, unread.body.archived_at],
      ['unread', null, null],
    );
    assert.deepEqual(await byState(''), [row.id]);

    const audit = await h.api('GET', `/v1/audit?subject_id=${row.id}`);
    assert.deepEqual(
      audit.body.items
        .map((e: { action: string; actor: string }) => `${e.action} by ${e.actor}`)
        .toReversed(),
      ['notification.read', 'notification.archived', 'notification.unread'].map(
        (a) => `${a} by user:${alice.id}`,
      ),
    );
  });

  test(`[${engine}] PATCH rejects a state that does not exist`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const row = await notify(h, source, alice.id);
    const res = await h.api('PATCH', `/v1/me/notifications/${row.id}`, { state: 'deleted' }, alice.token);
    assert.equal(res.status, 400);
    assert.equal(res.body.code, 'validation_failed');
  });

  test(`[${engine}] unread count follows changes and read-all marks every unread one at once`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    const alice = await member(h);
    const bob = await member(h);
    const rows = [];
    for (let i = 0; i < 3; i++) rows.push(await notify(h, source, alice.id));
    await notify(h, source, bob.id);
    const count = async (token: string) =>
      (await h.api('GET', '/v1/me/notifications/unread-count', undefined, token)).body.unread;
    assert.equal(await count(alice.token), 3);

    await h.api('PATCH', `/v1/me/notifications/${rows[0]!.id}`, { state: 'read' }, alice.token);
    assert.equal(await count(alice.token), 2);

    const all = await h.api('POST', '/v1/me/notifications/read-all', undefined, alice.token);
    assert.equal(all.status, 200);
    assert.deepEqual(all.body, { updated: 2 });
    assert.equal(await count(alice.token), 0);
    assert.equal(await count(bob.token), 1, "another user's inbox is untouched");

    // Every change keeps a stream position of its own, so a stream resuming mid-way misses none.
    const seqs = await Promise.all(rows.map((r) => seqOf(h, r.id)));
    assert.equal(new Set(seqs).size, 3);

    const none = await h.api('POST', '/v1/me/notifications/read-all', undefined, alice.token);
    assert.deepEqual(none.body, { updated: 0 });
  });

  test(`[${engine}] an admin issues, lists and revokes user tokens; a revoked token gets 401`, async (t) => {
    const h = await startHerald(t, engine);
    const alice = await createUser(h);
    const missing = await h.api('POST', '/v1/users/nobody/tokens', {});
    assert.equal(missing.status, 404);

    const issued = await h.api('POST', `/v1/users/${alice.id}/tokens`, { name: 'web inbox' });
    assert.equal(issued.status, 201);
    assert.equal(issued.body.user_id, alice.id);
    assert.equal(issued.body.expires_at, null);
    const token = issued.body.token as string;
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, token)).status, 200);

    const list = await h.api('GET', `/v1/users/${alice.id}/tokens`);
    assert.equal(list.status, 200);
    assert.equal(list.body.items.length, 1);
    assert.equal(list.body.items[0].name, 'web inbox');
    assert.equal(list.body.items[0].token, undefined, 'the token itself is never shown again');
    assert.ok(!list.text.includes(token));

    const revoke = await h.api('DELETE', `/v1/users/${alice.id}/tokens/${issued.body.id}`);
    assert.equal(revoke.status, 204);
    const after = await h.api('GET', '/v1/me/notifications', undefined, token);
    assert.equal(after.status, 401);
    assert.equal(after.body.code, 'unauthorized');
    assert.notEqual((await h.api('GET', `/v1/users/${alice.id}/tokens`)).body.items[0].revoked_at, null);
    assert.equal((await h.api('DELETE', `/v1/users/${alice.id}/tokens/key_nope`)).status, 404);
  });

  test(`[${engine}] a user token stops working when it expires`, async (t) => {
    const clock = new ManualClock();
    const h = await startHerald(t, engine, { clock });
    const alice = await createUser(h);
    const issued = await h.api('POST', `/v1/users/${alice.id}/tokens`, { expires_in_days: 1 });
    assert.equal(issued.body.expires_at, new Date(clock.now() + 86_400_000).toISOString());
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, issued.body.token)).status, 200);
    // Used a second before it expires, then a second after: the lookup Herald keeps for a few seconds ends
    // with the token.
    clock.advance(86_400_000 - 1_000);
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, issued.body.token)).status, 200);
    clock.advance(2_000);
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, issued.body.token)).status, 401);
  });

  test(`[${engine}] the inbox needs a user token: 401 without one, 403 for admin and source tokens`, async (t) => {
    const h = await startHerald(t, engine);
    const source = await createSource(h);
    assert.equal((await h.api('GET', '/v1/me/notifications', undefined, null)).status, 401);
    for (const token of [undefined, source.api_key]) {
      const res = await h.api('GET', '/v1/me/notifications/unread-count', undefined, token);
      assert.equal(res.status, 403);
      assert.equal(res.body.code, 'forbidden');
    }
    const alice = await createUser(h);
    assert.equal((await h.api('POST', `/v1/users/${alice.id}/tokens`, {}, source.api_key)).status, 403);
  });
}

async function seqOf(h: TestHerald, id: string): Promise<number> {
  const row = await h.store.db
    .selectFrom('notifications')
    .select('seq')
    .where('id', '=', id)
    .executeTakeFirstOrThrow();
  return Number(row.seq);
}
