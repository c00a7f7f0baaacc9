import type { FieldProblem } from '../errors.ts';

/** An attribute value: what rules and filters can compare against. */
export type AttributeValue = string | number | boolean | string[];

/** A user as accepted from the API, normalised (lower-case email, canonical locale and time zone). */
export interface UserInput {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  manager: string | null;
  /** What the person does (`finance`, `warehouse`); rules and announcements address people by role. */
  roles: string[];
  attributes: Record<string, AttributeValue>;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._@+-]*$/;
const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PHONE = /^\+?[0-9][0-9 ()./-]*$/;
const ATTRIBUTE_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;
const ROLE = /^[A-Za-z0-9][A-Za-z0-9._:-]*$/;
const FIELDS = new Set([
  'id',
  'name',
  'email',
  'phone',
  'locale',
  'timezone',
  'manager',
  'roles',
  'attributes',
]);
const MAX_ATTRIBUTES = 50;
const MAX_ROLES = 50;

/** True when `name` can name an attribute. */
export function isAttributeName(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 64 && ATTRIBUTE_NAME.test(name);
}

/** True when `role` can name a role. */
export function isRole(role: unknown): role is string {
  return typeof role === 'string' && role.length <= 64 && ROLE.test(role);
}

/** True when `id` is a valid user or group id. */
export function isDirectoryId(id: unknown): id is string {
  return typeof id === 'string' && id.length <= 128 && ID.test(id);
}

/**
 * Checks one user. `id` is the id it must have (from the path) or undefined when the body carries it (bulk).
 * Problems are appended to `problems` with field names under `prefix` (e.g. `body.` or `users[3].`); the
 * normalised user is returned when there were none.
 */
export function checkUser(
  raw: unknown,
  id: string | undefined,
  prefix: string,
  problems: FieldProblem[],
): UserInput | undefined {
  const before = problems.length;
  const bad = (field: string, message: string) => problems.push({ field: prefix + field, message });
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push({ field: prefix.replace(/\.$/, '') || 'body', message: 'must be an object' });
    return undefined;
  }
  const body = raw as Record<string, unknown>;
  for (const key of Object.keys(body)) if (!FIELDS.has(key)) bad(key, 'is not a known field');

  const userId = id ?? body['id'];
  if (id === undefined && !isDirectoryId(userId)) {
    bad('id', 'is required: 1-128 letters, digits, ".", "_", "@", "+", "-", starting with a letter or digit');
  } else if (id !== undefined && body['id'] !== undefined && body['id'] !== id) {
    bad('id', 'must equal the id in the path');
  }
  const name = body['name'];
  if (typeof name !== 'string' || name.trim() === '' || name.length > 200)
    bad('name', 'is required: 1-200 characters');

  const email = optionalText(body, 'email', 254, bad);
  if (email && !EMAIL.test(email)) bad('email', 'must be an email address');
  const phone = optionalText(body, 'phone', 32, bad);
  if (phone && !PHONE.test(phone)) bad('phone', 'must be a phone number (digits, optionally a leading +)');
  const locale = optionalText(body, 'locale', 35, bad);
  const canonicalLocale = locale ? canonicalLocaleOf(locale) : null;
  if (locale && canonicalLocale === undefined) bad('locale', 'must be a BCP 47 language tag, e.g. "en-GB"');
  const timezone = optionalText(body, 'timezone', 64, bad);
  const canonicalZone = timezone ? canonicalTimeZoneOf(timezone) : null;
  if (timezone && canonicalZone === undefined)
    bad('timezone', 'must be an IANA time zone, e.g. "Europe/Berlin"');
  const manager = optionalText(body, 'manager', 128, bad);
  if (manager && !isDirectoryId(manager)) bad('manager', 'must be a user id');
  else if (manager && manager === userId) bad('manager', 'must not be the user themself');
  const roles = checkRoles(body['roles'], bad);
  const attributes = checkAttributes(body['attributes'], (field, message) => bad(field, message));

  if (problems.length > before) return undefined;
  return {
    id: userId as string,
    name: name as string,
    email: email ? email.toLowerCase() : null,
    phone: phone || null,
    locale: canonicalLocale ?? null,
    timezone: canonicalZone ?? null,
    manager: manager || null,
    roles: roles ?? [],
    attributes: attributes ?? {},
  };
}

function checkRoles(value: unknown, bad: (field: string, message: string) => void): string[] | undefined {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) {
    bad('roles', 'must be a list of role names');
    return undefined;
  }
  if (value.length > MAX_ROLES) bad('roles', `may hold at most ${MAX_ROLES} roles`);
  value.forEach((role, i) => {
    if (!isRole(role))
      bad(`roles.${i}`, 'must be 1-64 letters, digits, ".", "_", ":", "-", starting with a letter or digit');
  });
  return [...new Set(value as string[])];
}

/** A string field that may be left out or null; "" counts as null. */
function optionalText(
  body: Record<string, unknown>,
  field: string,
  maxLength: number,
  bad: (field: string, message: string) => void,
): string | null {
  const value = body[field];
  if (value === undefined || value === null || value === '') return null;
  if (typeof value !== 'string') {
    bad(field, 'must be a string or null');
    return null;
  }
  if (value.length > maxLength) {
    bad(field, `must be at most ${maxLength} characters`);
    return null;
  }
  return value;
}

function checkAttributes(
  value: unknown,
  bad: (field: string, message: string) => void,
): Record<string, AttributeValue> | undefined {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    bad('attributes', 'must be an object');
    return undefined;
  }
  const entries = Object.entries(value);
  if (entries.length > MAX_ATTRIBUTES) bad('attributes', `may hold at most ${MAX_ATTRIBUTES} attributes`);
  for (const [name, v] of entries) {
    const field = `attributes.${name}`;
    if (!isAttributeName(name)) {
      bad(field, 'names are 1-64 letters, digits, "_", "-", starting with a letter or "_"');
    } else if (typeof v === 'string') {
      if (v.length > 1000) bad(field, 'must be at most 1000 characters');
    } else if (Array.isArray(v)) {
      if (v.length > 100 || v.some((item) => typeof item !== 'string' || item.length > 200)) {
        bad(field, 'a list holds at most 100 strings of at most 200 characters');
      }
    } else if (!(typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v)))) {
      bad(field, 'must be a string, number, boolean or list of strings');
    }
  }
  return value as Record<string, AttributeValue>;
}

// Bulk syncs repeat the same few locales and zones thousands of times; Intl constructors are not free.
const locales = new Map<string, string | undefined>();
const zones = new Map<string, string | undefined>();

function canonicalLocaleOf(tag: string): string | undefined {
  if (!locales.has(tag)) {
    let canonical: string | undefined;
    try {
      canonical = Intl.getCanonicalLocales(tag)[0];
    } catch {
      canonical = undefined;
    }
    remember(locales, tag, canonical);
  }
  return locales.get(tag);
}

function canonicalTimeZoneOf(zone: string): string | undefined {
  if (!zones.has(zone)) {
    let canonical: string | undefined;
    try {
      canonical = new Intl.DateTimeFormat('en', { timeZone: zone }).resolvedOptions().timeZone;
    } catch {
      canonical = undefined;
    }
    remember(zones, zone, canonical);
  }
  return zones.get(zone);
}

function remember(cache: Map<string, string | undefined>, key: string, value: string | undefined): void {
  if (cache.size >= 1000) cache.clear();
  cache.set(key, value);
}
