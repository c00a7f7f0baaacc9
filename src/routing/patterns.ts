/**
 * Event type patterns, as used by rules and endpoints: `*` matches any run of characters (so `case.*` matches
 * `case.created` and `case.sla.breached`, and `*` alone matches every type); everything else is literal.
 */
export function typePattern(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`);
}

const cache = new Map<string, RegExp>();

/** True when `type` matches any of `patterns` (an empty list matches nothing). */
export function matchesAnyType(patterns: readonly string[], type: string): boolean {
  for (const pattern of patterns) {
    let regex = cache.get(pattern);
    if (regex === undefined) {
      if (cache.size > 10_000) cache.clear();
      regex = typePattern(pattern);
      cache.set(pattern, regex);
    }
    if (regex.test(type)) return true;
  }
  return false;
}

/** Event types and patterns: dot-separated words of letters, digits, `_`, `-` (patterns may use `*`). */
export const TYPE_PATTERN_REGEX = '^[A-Za-z0-9_\\-*]+(\\.[A-Za-z0-9_\\-*]+)*$';

/** Where a rule reads a value from an event: `subject`, or a path under `data.` such as `data.owner`. */
export const EVENT_PATH_REGEX = '^(subject|data(\\.[A-Za-z0-9_-]+)+)$';
const EVENT_PATH = new RegExp(EVENT_PATH_REGEX);

/** True when `value` is a path into an event (`subject`, `data.region`) rather than a literal. */
export function isEventPath(value: unknown): value is string {
  return typeof value === 'string' && EVENT_PATH.test(value);
}

/** True when `value` looks meant as a path (`data...`, `subject...`), valid or not: such values are never literals. */
export function looksLikeEventPath(value: unknown): value is string {
  return typeof value === 'string' && (value === 'subject' || value.startsWith('data.') || value === 'data');
}

/**
 * Reads a path (`data.owner`, `subject`) from an event's subject and parsed data; strings, numbers and booleans
 * are kept as text, a list gives each of its items.
 */
export function valuesAt(subject: string | null, data: unknown, path: string): string[] {
  let value: unknown = path === 'subject' ? subject : undefined;
  if (path.startsWith('data.')) {
    value = data;
    for (const part of path.slice(5).split('.')) {
      value =
        value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
    }
  }
  const list = Array.isArray(value) ? value : [value];
  return list
    .filter((v): v is string | number | boolean => ['string', 'number', 'boolean'].includes(typeof v))
    .map(String)
    .filter((v) => v !== '');
}
