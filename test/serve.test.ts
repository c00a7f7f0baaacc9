import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_TOKEN, ENGINES, waitFor } from './helpers.ts';
import { call, databaseFor, startProcess } from './process.ts';
import { startReceiver } from './receiver.ts';

/*
 * `herald serve` runs its background workers in threads of their own (src/workers/thread.ts): the HTTP
 * thread ingests and serves the inbox, the workers' threads route and deliver, all on one database. By
 * default routing and delivery each have a thread; `HERALD_WORKER_THREADS=1` puts them in one.
 */

const BOTH = {
  routing: ['router', 'announcements', 'timers'],
  delivery: ['dispatcher'],
};
const ONE = { workers: ['router', 'announcements', 'timers', 'dispatcher'] };
const RUNS = [
  ...ENGINES.map((engine) => ({ engine, threads: '2', layout: 'routing and delivery threads', runs: BOTH })),
  { engine: 'sqlite', threads: '1', layout: 'one workers thread', runs: ONE },
] as const;

for (const { engine, threads, layout, runs } of RUNS) {
  test(`[${engine}] herald serve with ${layout}: they route, deliver and announce what the HTTP thread takes in`, async (t) => {
    const receiver = await startReceiver(t);
    const herald = await startProcess({
      HERALD_DATABASE_URL: await databaseFor(engine, t),
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_OUTBOUND_ALLOW: '127.0.0.0/8',
      HERALD_WORKER_THREADS: threads,
    });
    t.after(() => {
      herald.child.kill('SIGKILL');
    });
    const { base } = herald;
    // Each thread runs its share of the workers, and no worker runs twice.
    const started = herald
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"workers started"'))
      .map((line) => JSON.parse(line) as { thread: string; workers: string[] });
    assert.deepEqual(Object.fromEntries(started.map((s) => [s.thread, s.workers])), runs);
    const source = await call(base, 'POST', '/v1/sources', ADMIN_TOKEN, { id: 'erp', name: 'ERP' });
    await call(base, 'PUT', '/v1/users/ann', ADMIN_TOKEN, { name: 'Ann' });
    await call(base, 'PUT', '/v1/endpoints/desk', ADMIN_TOKEN, { url: receiver.url, types: ['order.*'] });
    const { body: token } = await call(base, 'POST', '/v1/users/ann/tokens', ADMIN_TOKEN, {});

    const events = await Promise.all(
      [1, 2, 3].map((n) =>
        call(base, 'POST', '/v1/events', source.body.api_key, {
          type: 'order.shipped',
          title: `Order ${n} shipped`,
          recipients: { users: ['ann'] },
        }),
      ),
    );
    assert.deepEqual(
      events.map((e) => e.status),
      [202, 202, 202],
    );
    const delivered = await receiver.waitForRequests(3, 10_000);
    assert.deepEqual(delivered.map((r) => JSON.parse(r.body).data.title).sort(), [
      'Order 1 shipped',
      'Order 2 shipped',
      'Order 3 shipped',
    ]);
    const inbox = await waitFor(async () => {
      const page = await call(base, 'GET', '/v1/me/notifications', token.token);
      return page.body.items.length === 3 ? page.body.items : undefined;
    });
    assert.deepEqual(inbox.map((n: { title: string }) => n.title).sort(), [
      'Order 1 shipped',
      'Order 2 shipped',
      'Order 3 shipped',
    ]);

    // Announcements are fanned out by a workers' thread, woken by the HTTP thread that took the request.
    const announced = await call(base, 'POST', '/v1/announcements', ADMIN_TOKEN, {
      audience: { everyone: true },
      title: 'Maintenance tonight',
      body: 'ERP is down from 22:00',
    });
    assert.equal(announced.status, 201);
    await waitFor(async () => {
      const page = await call(base, 'GET', '/v1/me/notifications', token.token);
      return page.body.items[0]?.title === 'Maintenance tonight' || undefined;
    });

    // One /metrics for all threads: what was ingested here, routed and delivered there.
    const metrics = await fetch(`${base}/metrics`).then((r) => r.text());
    const value = (name: string) =>
      metrics
        .split('\n')
        .filter((line) => line.startsWith(name))
        .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0);
    assert.equal(value('herald_events_ingested_total'), 3);
    assert.equal(value('herald_events_routed_total'), 3);
    assert.equal(value('herald_delivery_attempts_total'), 3);
    assert.ok(value('herald_process_cpu_seconds_total') > 0, 'the process figures appear once');
    assert.equal(metrics.match(/^# TYPE herald_events_routed_total/gm)?.length, 1);

    const exited = new Promise<number | null>((resolve) => herald.child.once('exit', resolve));
    herald.child.kill('SIGTERM');
    assert.equal(await exited, 0, 'every thread stops cleanly');
  });
}
