import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ADMIN_TOKEN, ENGINES, waitFor } from './helpers.ts';
import { call, databaseFor, startProcess } from './process.ts';

for (const engine of ENGINES) {
  test(`[${engine}] SIGTERM lets a webhook in flight finish and records it before the process exits`, async (t) => {
    // A receiver that answers only when told to, so the shutdown starts while the request is in flight.
    let arrived = 0;
    let answer: (() => void) | undefined;
    const receiver = createServer((req, res) => {
      arrived++;
      req.resume();
      answer = () => res.writeHead(200).end();
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.after(() => receiver.close());
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/`;
    const env = {
      HERALD_DATABASE_URL: await databaseFor(engine, t),
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_OUTBOUND_ALLOW: '127.0.0.0/8',
    };

    const first = await startProcess(env);
    t.after(() => {
      first.child.kill('SIGKILL');
    });
    const source = await call(first.base, 'POST', '/v1/sources', ADMIN_TOKEN, { id: 'erp', name: 'ERP' });
    assert.equal(
      (await call(first.base, 'PUT', '/v1/endpoints/desk', ADMIN_TOKEN, { url, types: ['*'] })).status,
      201,
    );
    const published = await call(first.base, 'POST', '/v1/events', source.body.api_key, {
      type: 'order.shipped',
    });
    assert.equal(published.status, 202);
    await waitFor(() => arrived === 1);

    const exited = new Promise<number | null>((resolve) => first.child.once('exit', (code) => resolve(code)));
    first.child.kill('SIGTERM');
    // Shutting down, it still waits for the answer; then records the attempt and exits cleanly.
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(first.child.exitCode, null, 'the process waits for the delivery in flight');
    answer!();
    assert.equal(await exited, 0);

    const second = await startProcess(env);
    t.after(() => {
      second.child.kill('SIGKILL');
    });
    const event = await call(second.base, 'GET', `/v1/events/${published.body.id}`, ADMIN_TOKEN);
    assert.equal(event.body.deliveries[0].status, 'succeeded');
    assert.equal(event.body.deliveries[0].attempt_count, 1);
    assert.equal(arrived, 1, 'not sent again after the restart');
    const stopped = new Promise((resolve) => second.child.once('exit', resolve));
    second.child.kill('SIGTERM');
    await stopped;
  });
}
