import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { sql } from 'kysely';
import { openStore } from '../src/db/engine.ts';
import { dropSchema, waitFor } from './helpers.ts';

/* Herald as a real process (`herald serve`), for tests of crashes and shutdown. */

const ROOT = join(import.meta.dirname, '..');

/** Starts `herald serve` as a real process and waits until it is ready; `output()` is what it printed so far. */
export async function startProcess(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; base: string; output: () => string }> {
  const child = spawn(process.execPath, ['src/main.ts', 'serve'], {
    cwd: ROOT,
    env: { ...process.env, ...env, HERALD_PORT: '0', HERALD_HOST: '127.0.0.1', HERALD_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk) => {
    output += chunk;
  });
  child.stderr!.on('data', (chunk) => {
    output += chunk;
  });
  const base = await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`herald exited: ${output}`);
    const match = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
    return match?.[1];
  }, 30_000);
  return { child, base, output: () => output };
}

/** Calls a running Herald over HTTP with a bearer token. */
export async function call(base: string, method: string, path: string, token: string, body?: unknown) {
  const response = await fetch(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(5000),
  });
  return { status: response.status, body: (await response.json().catch(() => undefined)) as any };
}

/** A database for a child process: a SQLite file, or a fresh schema selected through the URL's options. */
export async function databaseFor(engine: string, t: TestContext): Promise<string> {
  if (engine === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'herald-crash-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'herald.db');
  }
  const url = process.env['HERALD_TEST_DATABASE_URL']!;
  const schema = `crash_${Date.now().toString(36)}`;
  const admin = openStore(url);
  await sql`create schema ${sql.id(schema)}`.execute(admin.db);
  await admin.close();
  t.after(() => dropSchema(schema));

  const separator = url.includes('?') ? '&' : '?';
  return `${url}${separator}options=${encodeURIComponent(`-c search_path=${schema}`)}`;
}
