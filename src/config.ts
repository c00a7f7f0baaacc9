import { BlockList, isIP } from 'node:net';
import { resolve } from 'node:path';

/** Herald's configuration, read once from the environment, validated and frozen. */
export interface Config {
  readonly port: number;
  readonly host: string;
  /** A `postgres://` URL, or a SQLite file path (`:memory:` for a throwaway database). */
  readonly databaseUrl: string;
  /** When set, the admin bearer token; when not, one is generated on first start and printed once. */
  readonly adminToken: string | undefined;
  /** When set, `GET /metrics` asks for it as a bearer token. */
  readonly metricsToken: string | undefined;
  readonly bodyLimitBytes: number;
  readonly logLevel: string;
  /** CIDR ranges that outbound requests may reach although they are private, loopback or link-local. */
  readonly outboundAllow: readonly string[];
  /** Seconds to wait for a webhook receiver before the attempt counts as a timeout. */
  readonly webhookTimeoutSeconds: number;
  /** Seconds between webhook attempts after the first (Standard Webhooks' schedule by default). */
  readonly webhookRetrySchedule: readonly number[];
  /** Largest number of webhook requests in flight to one endpoint. */
  readonly webhookEndpointConcurrency: number;
  /**
   * Worker threads `herald serve` runs the background work in: 2 (routing in one, delivery in the other) or 1
   * (both in one, using less memory).
   */
  readonly workerThreads: 1 | 2;
  /** Public base URL of this Herald, used in links it writes; derived from host and port when unset. */
  readonly publicUrl: string;
  /** The VAPID `sub` claim web push is sent with: a `mailto:` or `https:` URL where the push service can reach us. */
  readonly vapidSubject: string;
  /** Consecutive failures that pause an endpoint or provider (circuit breaker). */
  readonly breakerThreshold: number;
  /** The first pause after the threshold, in seconds; it doubles with each failed probe. */
  readonly breakerPauseSeconds: number;
  /** Failing without a success for this long disables the endpoint or provider, in seconds. */
  readonly breakerDisableAfterSeconds: number;
  /** Slack's signing secret for interactive buttons (`HERALD_SLACK_SIGNING_SECRET`); unset refuses every request. */
  readonly slackSigningSecret: string | undefined;
}

/** A configuration value that cannot be used; start-up stops with this message. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Readonly<Record<string, string | undefined>>;

// Standard Webhooks' example schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
const DEFAULT_RETRY_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];

/** Reads `HERALD_*` variables into a frozen config; throws {@link ConfigError} naming the bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const port = integer(env, 'HERALD_PORT', 8080, 0, 65535);
  const host = env['HERALD_HOST'] || '0.0.0.0';
  const databaseUrl = env['HERALD_DATABASE_URL'] || resolve('data', 'herald.db');
  if (/^[a-z]+:\/\//i.test(databaseUrl) && !/^postgres(ql)?:\/\//i.test(databaseUrl)) {
    throw new ConfigError(
      `HERALD_DATABASE_URL must be a postgres:// URL or a SQLite file path, got a ${databaseUrl.split(':')[0]} URL`,
    );
  }
  const adminToken = env['HERALD_ADMIN_TOKEN'] || undefined;
  if (adminToken !== undefined && adminToken.length < 16) {
    throw new ConfigError('HERALD_ADMIN_TOKEN must be at least 16 characters long');
  }
  const metricsToken = env['HERALD_METRICS_TOKEN'] || undefined;
  if (metricsToken !== undefined && metricsToken.length < 16) {
    throw new ConfigError('HERALD_METRICS_TOKEN must be at least 16 characters long');
  }
  const outboundAllow = list(env['HERALD_OUTBOUND_ALLOW']);
  for (const cidr of outboundAllow) parseCidr(cidr, 'HERALD_OUTBOUND_ALLOW');
  const schedule = list(env['HERALD_WEBHOOK_RETRY_SCHEDULE']).map((s) => Number(s));
  if (schedule.some((s) => !Number.isFinite(s) || s < 0)) {
    throw new ConfigError(
      'HERALD_WEBHOOK_RETRY_SCHEDULE must be a comma-separated list of non-negative seconds',
    );
  }
  const logLevel = env['HERALD_LOG_LEVEL'] || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('HERALD_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent');
  }
  const publicUrl = (
    env['HERALD_PUBLIC_URL'] || `http://${host === '0.0.0.0' ? 'localhost' : host}:${port}`
  ).replace(/\/+$/, '');
  if (!URL.canParse(publicUrl) || !/^https?:$/.test(new URL(publicUrl).protocol)) {
    throw new ConfigError('HERALD_PUBLIC_URL must be an http: or https: URL');
  }
  const vapidSubject = env['HERALD_VAPID_SUBJECT'] || `mailto:herald@${new URL(publicUrl).hostname}`;
  if (!/^(mailto:[^@\s]+@[^@\s]+|https:\/\/\S+)$/.test(vapidSubject)) {
    throw new ConfigError('HERALD_VAPID_SUBJECT must be a mailto: address or an https: URL');
  }
  return Object.freeze({
    port,
    host,
    databaseUrl,
    adminToken,
    metricsToken,
    bodyLimitBytes: integer(env, 'HERALD_BODY_LIMIT', 512 * 1024, 1024, 64 * 1024 * 1024),
    logLevel,
    outboundAllow: Object.freeze(outboundAllow),
    webhookTimeoutSeconds: integer(env, 'HERALD_WEBHOOK_TIMEOUT', 15, 1, 300),
    webhookRetrySchedule: Object.freeze(schedule.length > 0 ? schedule : DEFAULT_RETRY_SCHEDULE),
    webhookEndpointConcurrency: integer(env, 'HERALD_WEBHOOK_ENDPOINT_CONCURRENCY', 16, 1, 1000),
    workerThreads: integer(env, 'HERALD_WORKER_THREADS', 2, 1, 2) as 1 | 2,
    publicUrl,
    vapidSubject,
    breakerThreshold: integer(env, 'HERALD_BREAKER_THRESHOLD', 5, 1, 1000),
    breakerPauseSeconds: integer(env, 'HERALD_BREAKER_PAUSE', 30, 1, 86400),
    breakerDisableAfterSeconds: integer(env, 'HERALD_BREAKER_DISABLE_AFTER', 5 * 86400, 60, 90 * 86400),
    slackSigningSecret: env['HERALD_SLACK_SIGNING_SECRET'] || undefined,
  });
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function list(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/** Parses `10.0.0.0/8` or a bare address into its parts; throws a ConfigError naming `variable`. */
export function parseCidr(
  cidr: string,
  variable: string,
): { address: string; prefix: number; family: 4 | 6 } {
  const [address = '', prefixText] = cidr.split('/');
  const family = isIP(address);
  if (family === 0) throw new ConfigError(`${variable}: "${cidr}" is not an IP address or CIDR range`);
  const max = family === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) {
    throw new ConfigError(`${variable}: "${cidr}" has a bad prefix length`);
  }
  return { address, prefix, family: family as 4 | 6 };
}

/** Builds a BlockList holding the given CIDR ranges (used as an allow list). */
export function cidrList(cidrs: readonly string[], variable: string): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const { address, prefix, family } = parseCidr(cidr, variable);
    list.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
  }
  return list;
}
