import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { ADMIN_TOKEN, ENGINES, waitFor } from './helpers.ts';
import { call, databaseFor, startProcess } from './process.ts';

for (const engine of ENGINES) {
  test(`[${engine}] after SIGKILL during publishing, every accepted event is routed and delivered exactly once per person`, async (t) => {
    const webhookIds = new Map<string, number>();
    const receiver = createServer((req, res) => {
      const id = String(req.headers['webhook-id']);
      webhookIds.set(id, (webhookIds.get(id) ?? 0) + 1);
      req.resume();
      req.on('end', () => res.writeHead(204).end());
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    t.after(() => receiver.close());
    const receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const env = {
      HERALD_DATABASE_URL: await databaseFor(engine, t),
      HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
      HERALD_OUTBOUND_ALLOW: '127.0.0.0/8',
      HERALD_WEBHOOK_TIMEOUT: '2',
    };

    const first = await startProcess(env);
    t.after(() => {
      first.child.kill('SIGKILL');
    });
    const source = await call(first.base, 'POST', '/v1/sources', ADMIN_TOKEN, { id: 'erp', name: 'ERP' });
    assert.equal(source.status, 201);
    assert.equal((await call(first.base, 'PUT', '/v1/users/u1', ADMIN_TOKEN, { name: 'U1' })).status, 201);
    const endpoint = await call(first.base, 'PUT', '/v1/endpoints/desk', ADMIN_TOKEN, {
      url: receiverUrl,
      types: ['job.*'],
    });
    assert.ok(endpoint.status < 300, JSON.stringify(endpoint.body));

    // Publish from 20 concurrent senders and kill the process once 100 events were accepted.
    const accepted = new Map<string, string>();
    let next = 0;
    const sender = async () => {
      while (next < 2000) {
        const n = next++;
        try {
          const res = await call(first.base, 'POST', '/v1/events', source.body.api_key, {
            id: `job-${n}`,
            type: 'job.failed',
            recipients: { users: ['u1'] },
          });
          if (res.status === 202) accepted.set(`job-${n}`, res.body.id);
          if (accepted.size >= 100 && first.child.exitCode === null) first.child.kill('SIGKILL');
        } catch {
          return; // the process is gone
        }
      }
    };
    await Promise.all(Array.from({ length: 20 }, sender));
    // A killed process has a signalCode and no exitCode.
    if (first.child.exitCode === null && first.child.signalCode === null) {
      await new Promise((resolve) => first.child.once('exit', resolve));
    }
    assert.ok(accepted.size >= 100);

    const second = await startProcess(env);
    t.after(() => {
      second.child.kill('SIGKILL');
    });
    for (const [sourceEventId, id] of accepted) {
      const event = await waitFor(async () => {
        const res = await call(second.base, 'GET', `/v1/events/${id}`, ADMIN_TOKEN);
        const done = res.body?.deliveries?.every((d: { status: string }) => d.status === 'succeeded');
        return res.body?.status === 'routed' && res.body.deliveries.length === 1 && done
          ? res.body
          : undefined;
      }, 90_000);
      assert.equal(event.source_event_id, sourceEventId);
      assert.equal(event.notifications.length, 1, `one notification for ${sourceEventId}`);
      assert.ok(webhookIds.has(event.deliveries[0].msg_id), `webhook for ${sourceEventId} arrived`);
    }
    // Nothing was delivered under an id that does not belong to an event (retries reuse the webhook-id).
    const expected = new Set([...accepted.values()].map((id) => `msg_${id.slice(4)}`));
    for (const id of webhookIds.keys()) {
      if (!expected.has(id)) {
        // Events that were committed but whose 202 never reached the client are delivered too; they are legitimate.
        const res = await call(second.base, 'GET', `/v1/events/evt_${id.slice(4)}`, ADMIN_TOKEN);
        assert.equal(res.status, 200, `webhook ${id} belongs to a stored event`);
      }
    }
    const inbox = await call(second.base, 'GET', `/v1/events?limit=500&type=job.failed`, ADMIN_TOKEN);
    assert.ok(inbox.body.items.length >= accepted.size);
    // Stopped here rather than in an after-hook, so it is gone before its database is removed.
    const exited = new Promise((resolve) => second.child.once('exit', resolve));
    second.child.kill('SIGTERM');
    await exited;
  });
}
