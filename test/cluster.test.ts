import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { sql } from 'kysely';
import { openStore } from '../src/db/engine.ts';
import { createSource, createUser } from './factories.ts';
import { ENGINES, openTestStore, startHerald, waitFor } from './helpers.ts';

const PG_URL = process.env['HERALD_TEST_DATABASE_URL'];

if (ENGINES.includes('postgres')) {
  test('[postgres] two Herald nodes on one database route each event once and deliver each webhook once', async (t) => {
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      received.push(String(req.headers['webhook-id']));
      req.resume();
      req.on('end', () => res.writeHead(200).end());
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.after(() => receiver.close());

    // Two nodes: separate pools and LISTEN connections on the same schema, as two processes would have.
    const storeA = await openTestStore(t, 'postgres');
    const schema = (await sql<{ s: string }>`select current_schema() as s`.execute(storeA.db)).rows[0]!.s;
    const storeB = openStore(PG_URL!, { schema, poolSize: 5 });
    t.after(() => storeB.close());
    const a = await startHerald(t, 'postgres', { store: storeA });
    const b = await startHerald(t, 'postgres', { store: storeB });

    const source = await createSource(a);
    const users = await Promise.all([createUser(a), createUser(a), createUser(a)]);
    const port = (receiver.address() as AddressInfo).port;
    const endpoint = await a.api('PUT', '/v1/endpoints/monitor', {
      url: `http://127.0.0.1:${port}/`,
      types: ['job.*'],
    });
    assert.ok(endpoint.status < 300, endpoint.text);

    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const node = i % 2 === 0 ? a : b;
      const events = Array.from({ length: 10 }, (_, j) => ({
        id: `job-${i}-${j}`,
        type: 'job.failed',
        recipients: { users: users.map((u) => u.id) },
      }));
      const res = await node.api('POST', '/v1/events/batch', { events }, source.api_key);
      assert.equal(res.body.accepted, 10);
      ids.push(...res.body.items.map((item: { id: string }) => item.id));
    }

    await waitFor(async () => {
      const pending = await storeA.db
        .selectFrom('deliveries')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('status', '!=', 'succeeded')
        .executeTakeFirst();
      const routed = await storeA.db
        .selectFrom('events')
        .select((eb) => eb.fn.countAll().as('n'))
        .where('status', '=', 'routed')
        .executeTakeFirst();
      return Number(routed!.n) === ids.length && Number(pending!.n) === 0;
    }, 30_000);

    const routings = await storeA.db
      .selectFrom('audit_log')
      .select((eb) => eb.fn.countAll().as('n'))
      .where('action', '=', 'event.routed')
      .executeTakeFirst();
    assert.equal(Number(routings!.n), ids.length, 'each event routed exactly once');
    const notifications = await storeA.db
      .selectFrom('notifications')
      .select((eb) => eb.fn.countAll().as('n'))
      .executeTakeFirst();
    assert.equal(Number(notifications!.n), ids.length * users.length);
    assert.equal(received.length, ids.length, 'each webhook sent exactly once');
    assert.equal(new Set(received).size, ids.length);
  });
}
