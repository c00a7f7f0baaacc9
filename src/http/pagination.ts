import { Type } from 'typebox';
import { HeraldError } from '../errors.ts';

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 200 })),
};

/** The envelope of every list: `{items, next_cursor}` (null on the last page). */
export const Page = <T extends Parameters<typeof Type.Array>[0]>(item: T) =>
  Type.Object({ items: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });

/** Cursors are opaque to clients: the sort key of the last item, base64url-encoded. */
export function encodeCursor(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url');
}

// Every key Herald pages by is an id (letters, digits, `._@+-`), a number, or a rule's `<position>:<id>`; a
// cursor holding anything else (JSON, say) was not made by Herald and would only page from a wrong place.
const KEY = /^[A-Za-z0-9._@+:-]+$/;

/** The key in a cursor from {@link encodeCursor}; `bad_cursor` for anything else. */
export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const key = Buffer.from(cursor, 'base64url').toString('utf8');
  if (!KEY.test(key) || encodeCursor(key) !== cursor) throw new HeraldError('bad_cursor');
  return key;
}

/**
 * Cuts one page out of `rows`, fetched with `limit + 1`: the extra row only tells whether a next page exists.
 */
export function toPage<R, T>(
  rows: R[],
  limit: number,
  key: (row: R) => string,
  present: (row: R) => T,
): { items: T[]; next_cursor: string | null } {
  const more = rows.length > limit;
  const page = more ? rows.slice(0, limit) : rows;
  const last = page.at(-1);
  return {
    items: page.map(present),
    next_cursor: more && last !== undefined ? encodeCursor(key(last)) : null,
  };
}
