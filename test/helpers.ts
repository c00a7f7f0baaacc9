import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { sql } from 'kysely';
import { buildHerald, type Herald } from '../src/app.ts';
import type { Clock } from '../src/clock.ts';
import { loadConfig } from '../src/config.ts';
import { type Engine, openStore, type Store } from '../src/db/engine.ts';
import { SCHEMA_CHANGE_LOCK } from '../src/db/migrate.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789';
const PG_URL = process.env['HERALD_TEST_DATABASE_URL'];

/** The engines every store test runs against: SQLite always, PostgreSQL when HERALD_TEST_DATABASE_URL is set. */
export const ENGINES: Engine[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite'];

/**
 * Opens a fresh, empty store: a new SQLite file in a temp folder, or a new schema on PostgreSQL. Cleaned up
 * when the test passes and kept when it fails, so its state can be inspected. An unreachable PostgreSQL fails
 * the test (it is never skipped).
 */
export async function openTestStore(t: TestContext | undefined, engine: Engine): Promise<Store> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'herald-test-'));
    const store = openStore(join(dir, 'herald.db'));
    t?.after(async () => {
      await store.close();
      if (!failed(t)) rmSync(dir, { recursive: true, force: true });
    });
    return store;
  }
  const schema = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = openStore(PG_URL!);
  await sql`create schema ${sql.id(schema)}`.execute(admin.db);
  await admin.close();
  const store = openStore(PG_URL!, { schema, poolSize: 5 });
  t?.after(async () => {
    await store.close();
    if (!failed(t)) await dropSchema(schema);
  });
  return store;
}

/**
 * Drops a test schema, holding the lock migrations hold: Kysely's migrator reads every schema's catalog,
 * which fails if a schema disappears meanwhile (test files run in parallel).
 */
export async function dropSchema(schema: string): Promise<void> {
  const cleanup = openStore(PG_URL!);
  try {
    await cleanup.db.connection().execute(async (connection) => {
      await sql`select pg_advisory_lock(${SCHEMA_CHANGE_LOCK})`.execute(connection);
      try {
        await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(connection);
      } finally {
        await sql`select pg_advisory_unlock(${SCHEMA_CHANGE_LOCK})`.execute(connection);
      }
    });
  } finally {
    await cleanup.close();
  }
}

function failed(t: TestContext | undefined): boolean {
  // Inside an `after` hook, node:test's context knows whether the test passed (`passed`, not in its types).
  return (t as { passed?: boolean } | undefined)?.passed === false;
}

export interface TestHeraldOptions {
  env?: Record<string, string>;
  clock?: Clock;
  /** Start the routing and delivery workers (default true). */
  workers?: boolean;
  /** Share a store with another Herald (two nodes on one database). */
  store?: Store;
}

export interface TestHerald extends Herald {
  store: Store;
  /** Calls the API through `inject` with the admin token unless `token` says otherwise (null: none). */
  api(method: string, url: string, body?: unknown, token?: string | null): Promise<ApiResponse>;
  /** Listens on an ephemeral loopback port; returns the base URL. */
  listen(): Promise<string>;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: any;
  text: string;
}

/** Builds a Herald on a fresh store of `engine`, closed when the test ends. */
export async function startHerald(
  t: TestContext,
  engine: Engine,
  options: TestHeraldOptions = {},
): Promise<TestHerald> {
  // `after` hooks run in the order they are added: Herald must stop (and write what it has in flight)
  // before the store it works on is closed, so its hook goes first.
  let herald: Herald | undefined;
  t.after(() => herald?.close());
  const store = options.store ?? (await openTestStore(t, engine));
  const config = loadConfig({
    HERALD_ADMIN_TOKEN: ADMIN_TOKEN,
    HERALD_LOG_LEVEL: 'silent',
    HERALD_OUTBOUND_ALLOW: '127.0.0.0/8,::1/128',
    HERALD_DATABASE_URL: ':memory:',
    HERALD_PORT: '0',
    ...options.env,
  });
  const built = await buildHerald({ config, store, ...(options.clock ? { clock: options.clock } : {}) });
  herald = built;
  if (options.workers !== false) await built.startWorkers();
  return {
    ...built,
    store,
    async api(method, url, body, token = ADMIN_TOKEN) {
      const headers: Record<string, string> = {};
      if (token !== null) headers['authorization'] = `Bearer ${token}`;
      const response = await built.app.inject({
        method: method as 'GET',
        url,
        headers,
        ...(body === undefined ? {} : { payload: body as object }),
      });
      let parsed: any;
      try {
        parsed = response.body === '' ? undefined : JSON.parse(response.body);
      } catch {
        parsed = undefined;
      }
      return {
        status: response.statusCode,
        headers: response.headers as ApiResponse['headers'],
        body: parsed,
        text: response.body,
      };
    },
    async listen() {
      return built.app.listen({ host: '127.0.0.1', port: 0 });
    },
  };
}

/** Polls `check` until it returns a value other than undefined/false; fails after `timeoutMs`. Not a timing assertion. */
export async function waitFor<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Walks every page of a list (`limit` items a page, with `token`, admin by default); returns all items. */
export async function walk<T = { id: string }>(
  h: TestHerald,
  url: string,
  limit: number,
  token?: string,
): Promise<{ items: T[]; pages: number }> {
  const items: T[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const sep = url.includes('?') ? '&' : '?';
    const res = await h.api(
      'GET',
      `${url}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`,
      undefined,
      token,
    );
    assert.equal(res.status, 200, res.text);
    assert.ok(res.body.items.length <= limit);
    items.push(...res.body.items);
    cursor = res.body.next_cursor;
    pages++;
  } while (cursor !== null);
  return { items, pages };
}

/** Routes everything pending, for a Herald whose workers are off. */
export async function routeAll(h: TestHerald): Promise<void> {
  while ((await h.workers.router.runOnce()) > 0);
}
