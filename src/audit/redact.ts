/*
 * Secrets never reach the audit log, and ordinary reads show them as REDACTED: the log is read by many operators
 * and kept for long, and read answers end up in terminals, tickets and scripts.
 */

/** Shown instead of a secret; sent back in a write, it keeps the stored value. */
export const REDACTED = '********';

/**
 * `url` without what may carry a credential: the query (`?code=`, `?sig=`, `?token=`) becomes REDACTED, and with
 * `path: false` the path and query together do (a Slack or Teams incoming webhook URL is its own credential).
 * Scheme, host and port stay, to tell where it points.
 */
export function redactUrl(url: string, keep: { path: boolean }): string {
  if (!URL.canParse(url)) return REDACTED;
  const { origin, pathname, search } = new URL(url);
  if (!keep.path) return `${origin}/${REDACTED}`;
  return `${origin}${pathname}${search === '' ? '' : `?${REDACTED}`}`;
}

// The names log.ts redacts, and the secrets the admin API takes: keys of this name hold a secret at any depth.
const SECRET_KEY = /^(api_key|token|authorization|(.*_)?(secret|password))$/i;

/**
 * `data` with the value of every key that names a secret replaced by REDACTED, at any depth: a guard for audit
 * entries that record what an admin sent, so a field added to a body later cannot carry a secret into the log.
 */
export function redactSecrets(data: unknown): unknown {
  if (Array.isArray(data)) return data.map(redactSecrets);
  if (data === null || typeof data !== 'object' || !isPlain(data)) return data;
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => [
      key,
      SECRET_KEY.test(key) && value !== null && value !== undefined ? REDACTED : redactSecrets(value),
    ]),
  );
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
