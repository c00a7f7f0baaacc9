import { hostname } from 'node:os';
import { type LoggerOptions, pino } from 'pino';
import type { Config } from './config.ts';

// Secrets never reach the logs: credentials in headers and secrets in bodies are redacted.
const REDACT = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["idempotency-key"]',
  '*.secret',
  '*.callback_secret',
  '*.api_key',
  '*.token',
  '*.password',
];

/** JSON logs at the configured level, secrets redacted: the HTTP thread's (through Fastify) and the workers'. */
export function logOptions(config: Config): LoggerOptions {
  return { level: config.logLevel, redact: { paths: REDACT, censor: '[redacted]' } };
}

/** The logger of a thread without Fastify (a workers' thread); `thread` names it in every line. */
export function threadLogger(config: Config, thread: string) {
  return pino({ ...logOptions(config), base: { pid: process.pid, hostname: hostname(), thread } });
}
