import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';

/** A server running in a child process, ready to take traffic. */
export interface ServerProcess {
  readonly url: string;
  readonly pid: number;
  /** Stops the process (SIGTERM, then SIGKILL after a grace period); safe to call twice. */
  stop(): Promise<void>;
}

/** Herald under test, with the admin token it was started with. */
export interface HeraldProcess extends ServerProcess {
  readonly adminToken: string;
}

const ROOT = join(import.meta.dirname, '..');
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 10_000;
const OUTPUT_TAIL = 4_000;

// Last resort: children never outlive the benchmark, even when it dies on an uncaught error.
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Starts `node src/main.ts serve` on a fresh SQLite file in a temp folder (removed on stop). */
export async function startHerald(): Promise<HeraldProcess> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-bench-'));
  const port = await freePort();
  const adminToken = randomBytes(24).toString('base64url');
  const server = await startServer('herald', ['src/main.ts', 'serve'], port, {
    HERALD_DATABASE_URL: join(dir, 'herald.db'),
    HERALD_HOST: '127.0.0.1',
    HERALD_PORT: String(port),
    HERALD_ADMIN_TOKEN: adminToken,
    HERALD_LOG_LEVEL: 'warn',
    HERALD_OUTBOUND_ALLOW: '127.0.0.0/8',
  }).catch(async (error: unknown) => {
    await rm(dir, { recursive: true, force: true });
    throw error;
  });
  return {
    ...server,
    adminToken,
    async stop() {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Starts the no-op Fastify server of bench/baseline.ts. */
export async function startBaseline(): Promise<ServerProcess> {
  const port = await freePort();
  return startServer('baseline', ['bench/baseline.ts'], port, { BENCH_PORT: String(port) });
}

async function startServer(
  name: string,
  args: string[],
  port: number,
  env: Record<string, string>,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.on('exit', () => live.delete(child));
  const output = keepTail(child);
  const server: ServerProcess = {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    stop: () => stopChild(child),
  };
  try {
    await waitUntilReady(server.url, child);
  } catch (error) {
    await server.stop();
    throw new Error(`${name} did not start: ${(error as Error).message}\n${output()}`);
  }
  return server;
}

/** Polls `/readyz` until it answers 200, the child exits, or the time is up. */
async function waitUntilReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`it exited with code ${child.exitCode}`);
    try {
      const response = await request(`${url}/readyz`, { headersTimeout: 1_000, bodyTimeout: 1_000 });
      await response.body.dump();
      if (response.statusCode === 200) return;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  throw new Error(`/readyz did not answer 200 within ${READY_TIMEOUT_MS / 1000} s`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
  await exited;
  clearTimeout(timer);
}

/** Drains the child's output (a full pipe would stall it) and keeps its end for error messages. */
function keepTail(child: ChildProcess): () => string {
  let tail = '';
  const keep = (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-OUTPUT_TAIL);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  return () => tail;
}

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no port was assigned');
  return address.port;
}
