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
