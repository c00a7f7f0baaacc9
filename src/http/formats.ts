import type { Ajv } from 'ajv';
import { Type } from 'typebox';
import { Format } from 'typebox/format';
import { invalid } from '../errors.ts';

// RFC 3339 section 5.6; its note allows a lower-case `t` and `z`, and a space between date and time.
const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/;

// The years RFC 3339 can write (0001-9999), as UTC.
const EARLIEST = Date.parse('0001-01-01T00:00:00.000Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * The one parser of the date-times Herald is sent: RFC 3339 text to epoch milliseconds, or undefined when it
 * is not one Herald can store and write back. A leap second (`23:59:60`) is refused, since JavaScript time has
 * none, and so is anything outside the years 0001-9999 once converted to UTC (`9999-12-31T23:59:59-23:59`),
 * which RFC 3339 could not write back. Digits past milliseconds are dropped.
 */
export function parseTime(text: string): number | undefined {
  const m = RFC3339.exec(text);
  if (m === null) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const [fraction = '', sign, offsetHour = '0', offsetMinute = '0'] = m.slice(7);
  if (hour > 23 || minute > 59 || second > 59 || Number(offsetHour) > 23 || Number(offsetMinute) > 59)
    return undefined;
  // Date.UTC reads years 0-99 as 1900-1999; setUTCFullYear takes the year as given.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // A month past 12 or a day the month does not have rolls over into another date: not one that was written.
  if (date.getUTCMonth() !== month - 1 || date.getUTCDate() !== day) return undefined;
  date.setUTCHours(hour, minute, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const offset = (Number(offsetHour) * 60 + Number(offsetMinute)) * 60_000;
  const ms = date.getTime() + (sign === '+' ? -offset : sign === '-' ? offset : 0);
  return ms >= EARLIEST && ms <= LATEST ? ms : undefined;
}

/** {@link parseTime} for a value the schema already checked; a 400 naming `field` should it still not parse. */
export function toTime(text: string, field: string): number {
  const ms = parseTime(text);
  if (ms === undefined) throw invalid(field, 'must be an RFC 3339 date-time within the years 0001-9999');
  return ms;
}

const isTime = (text: string): boolean => parseTime(text) !== undefined;

/** Makes an ajv instance check `date-time` with {@link parseTime} (after ajv-formats, which it replaces). */
export function addTimeFormat(ajv: Ajv): void {
  ajv.addFormat('date-time', { type: 'string', validate: isTime });
}

// TypeBox's compiled checks (the event formats) look the format up when they are compiled: this runs first,
// as every module using DateTime imports this one.
Format.Set('date-time', isTime);

/** A date-time field of a request, checked with {@link parseTime}. */
export const DateTime = (options: { description?: string } = {}) =>
  Type.String({ format: 'date-time', ...options });
