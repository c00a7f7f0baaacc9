/*
 * Durations ("30s", "5m") and wall-clock times ("22:00") in a user's time zone. Local times are turned into
 * instants with the zone's offset at that moment, so daylight-saving changes move them with the clock on
 * the wall; a local time that does not exist (skipped by a spring-forward) lands an hour later.
 */

/** A duration: a whole number and a unit (`ms`, `s`, `m`, `h`, `d`). */
export const DURATION_PATTERN = '^[1-9][0-9]{0,6}(ms|s|m|h|d)$';
/** A wall-clock time, `HH:MM` on a 24-hour clock. */
export const CLOCK_PATTERN = '^([01][0-9]|2[0-3]):[0-5][0-9]$';

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Milliseconds in a duration such as `30s`; undefined if it is not one. */
export function parseDuration(text: string): number | undefined {
  const match = /^([1-9][0-9]{0,6})(ms|s|m|h|d)$/.exec(text);
  return match === null ? undefined : Number(match[1]) * UNIT_MS[match[2]!]!;
}

const MINUTE = 60_000;
const DAY = 86_400_000;

const formats = new Map<string, Intl.DateTimeFormat>();

function formatFor(zone: string): Intl.DateTimeFormat {
  let format = formats.get(zone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formats.set(zone, format);
  }
  return format;
}

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/** The wall clock in `zone` at instant `ms` (a zone Intl does not know counts as UTC). */
function wallAt(ms: number, zone: string | null): Wall {
  if (zone === null || zone === 'UTC') return utcWall(ms);
  let parts: Intl.DateTimeFormatPart[];
  try {
    parts = formatFor(zone).formatToParts(ms);
  } catch {
    return utcWall(ms);
  }
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return {
    year: get('year'),
    month: get('month'),
    day: get('day'),
    hour: get('hour'),
    minute: get('minute'),
    second: get('second'),
  };
}

function utcWall(ms: number): Wall {
  const d = new Date(ms);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
  };
}

/** How far the zone's clock is ahead of UTC at instant `ms`, to the second. */
function offsetAt(ms: number, zone: string | null): number {
  const w = wallAt(ms, zone);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - (ms - (((ms % 1000) + 1000) % 1000));
}

/** The instant the clock in `zone` shows `minutes` past midnight on the given local date (day may overflow). */
function instantOf(year: number, month: number, day: number, minutes: number, zone: string | null): number {
  const guess = Date.UTC(year, month - 1, day, 0, minutes);
  const first = guess - offsetAt(guess, zone);
  const second = guess - offsetAt(first, zone);
  return second;
}

/** Minutes past midnight of `HH:MM`. */
export function clockMinutes(text: string): number {
  const [h, m] = text.split(':');
  return Number(h) * 60 + Number(m);
}

/** The first instant after `now` at which the clock in `zone` shows `minutes` past midnight. */
export function nextLocalTime(now: number, zone: string | null, minutes: number): number {
  const w = wallAt(now, zone);
  for (let days = 0; days < 3; days++) {
    const at = instantOf(w.year, w.month, w.day + days, minutes, zone);
    if (at > now) return at;
  }
  return now + DAY;
}

/**
 * When quiet hours `start`–`end` (`HH:MM`, local to `zone`, wrapping midnight when start is later) that are
 * on at `now` end; undefined when `now` is outside them. Equal start and end mean no quiet hours.
 */
export function quietUntil(
  now: number,
  zone: string | null,
  quiet: { start: string; end: string },
): number | undefined {
  const start = clockMinutes(quiet.start);
  const end = clockMinutes(quiet.end);
  if (start === end) return undefined;
  const w = wallAt(now, zone);
  const current = w.hour * 60 + w.minute;
  const inside = start < end ? current >= start && current < end : current >= start || current < end;
  return inside ? nextLocalTime(now, zone, end) : undefined;
}

/** The next top of the hour on the clock in `zone` (zones with half-hour offsets have their own). */
export function nextHour(now: number, zone: string | null): number {
  const w = wallAt(now, zone);
  return now - (w.minute * MINUTE + w.second * 1000 + (((now % 1000) + 1000) % 1000)) + 60 * MINUTE;
}
