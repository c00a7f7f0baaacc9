import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.ts';

test('defaults give an embedded SQLite file under ./data and port 8080', () => {
  const config = loadConfig({});
  assert.equal(config.port, 8080);
  assert.match(config.databaseUrl, /data\/herald\.db$/);
  assert.equal(config.bodyLimitBytes, 512 * 1024);
  assert.equal(config.workerThreads, 2);
  assert.ok(Object.isFrozen(config));
});

test('a bad value stops start-up with a message naming the variable', () => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ HERALD_PORT: 'eighty' }, /HERALD_PORT/],
    [{ HERALD_PORT: '70000' }, /HERALD_PORT/],
    [{ HERALD_DATABASE_URL: 'mysql://x' }, /HERALD_DATABASE_URL/],
    [{ HERALD_ADMIN_TOKEN: 'short' }, /HERALD_ADMIN_TOKEN/],
    [{ HERALD_METRICS_TOKEN: 'short' }, /HERALD_METRICS_TOKEN/],
    [{ HERALD_OUTBOUND_ALLOW: '10.0.0.0/99' }, /HERALD_OUTBOUND_ALLOW/],
    [{ HERALD_OUTBOUND_ALLOW: 'not-an-ip' }, /HERALD_OUTBOUND_ALLOW/],
    [{ HERALD_LOG_LEVEL: 'loud' }, /HERALD_LOG_LEVEL/],
    [{ HERALD_WEBHOOK_RETRY_SCHEDULE: '5,soon' }, /HERALD_WEBHOOK_RETRY_SCHEDULE/],
    [{ HERALD_WORKER_THREADS: '3' }, /HERALD_WORKER_THREADS/],
  ];
  for (const [env, message] of cases) {
    assert.throws(
      () => loadConfig(env),
      (e: unknown) => e instanceof ConfigError && message.test(e.message),
    );
  }
});
