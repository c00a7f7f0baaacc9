import { parseArgs } from 'node:util';
import { buildHerald } from './app.ts';
import { ConfigError, loadConfig } from './config.ts';
import { openStore } from './db/engine.ts';
import { migrateToLatest } from './db/migrate.ts';

const USAGE = `Usage: herald <command> [options]

Commands:
  serve              Start Herald (HTTP API and workers); migrations run first.
  migrate            Apply database migrations and exit.
  send               Publish one event to a running Herald.
                       --url URL        Herald's base URL (default $HERALD_URL or http://localhost:8080)
                       --key KEY        the source API key (default $HERALD_SOURCE_KEY)
                       --type TYPE      event type, e.g. case.escalated (required)
                       --title TEXT     --summary TEXT   --severity info|warning|error|critical
                       --subject TEXT   --url-link URL   --id ID
                       --to USER        a recipient user id (repeatable)
                       --group GROUP    a recipient group id (repeatable)
                       --data JSON      the event's data
  help               Show this text.

Configuration is read from HERALD_* environment variables; see the README.`;

const out = (text: string) => process.stdout.write(`${text}\n`);
const err = (text: string) => process.stderr.write(`${text}\n`);

async function serve(): Promise<void> {
  const config = loadConfig();
  // The background workers get threads (and cores) of their own, unless the database lives in this one.
  const herald =
    config.databaseUrl === ':memory:'
      ? await buildHerald({ config })
      : await buildHerald({ config, threaded: true });
  if (herald.generatedAdminToken !== undefined) {
    // Printed once, on the first start, straight to the terminal (never to the logs).
    out(
      `\nHerald created an admin token. It is shown only now; keep it safe:\n\n  ${herald.generatedAdminToken}\n`,
    );
  }
  await herald.startWorkers();
  await herald.app.listen({ host: config.host, port: config.port });
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    herald.app.log.info({ signal }, 'shutting down: finishing in-flight work');
    herald.close().then(
      () => process.exit(0),
      (error: unknown) => {
        herald.app.log.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

async function migrate(): Promise<void> {
  const config = loadConfig();
  const store = openStore(config.databaseUrl);
  try {
    const applied = await migrateToLatest(store.db, store.engine);
    out(applied.length === 0 ? 'The database is up to date.' : `Applied: ${applied.join(', ')}`);
  } finally {
    await store.close();
  }
}

async function send(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      url: { type: 'string' },
      key: { type: 'string' },
      type: { type: 'string' },
      title: { type: 'string' },
      summary: { type: 'string' },
      severity: { type: 'string' },
      subject: { type: 'string' },
      'url-link': { type: 'string' },
      id: { type: 'string' },
      to: { type: 'string', multiple: true },
      group: { type: 'string', multiple: true },
      data: { type: 'string' },
    },
  });
  const base = (values.url ?? process.env['HERALD_URL'] ?? 'http://localhost:8080').replace(/\/+$/, '');
  const key = values.key ?? process.env['HERALD_SOURCE_KEY'];
  if (!key)
    throw new UsageError('send needs --key (or HERALD_SOURCE_KEY): the API key of the publishing source');
  if (!values.type) throw new UsageError('send needs --type, e.g. --type case.escalated');
  let data: unknown;
  if (values.data !== undefined) {
    try {
      data = JSON.parse(values.data);
    } catch {
      throw new UsageError('--data must be JSON');
    }
  }
  const event = {
    type: values.type,
    id: values.id,
    title: values.title,
    summary: values.summary,
    severity: values.severity,
    subject: values.subject,
    url: values['url-link'],
    recipients: values.to || values.group ? { users: values.to, groups: values.group } : undefined,
    data,
  };
  const response = await fetch(`${base}/v1/events`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(event),
  });
  const text = await response.text();
  if (!response.ok) {
    err(`Herald answered ${response.status}: ${text}`);
    process.exitCode = 1;
    return;
  }
  out(text);
}

class UsageError extends Error {}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
    case undefined:
      return serve();
    case 'migrate':
      return migrate();
    case 'send':
      return send(rest);
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return;
    default:
      throw new UsageError(`Unknown command "${command}".\n\n${USAGE}`);
  }
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof ConfigError || error instanceof UsageError) {
    err(`herald: ${error.message}`);
    process.exit(2);
  }
  err(`herald: ${(error as Error)?.stack ?? String(error)}`);
  process.exit(1);
});
