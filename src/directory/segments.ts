import { type RawBuilder, sql } from 'kysely';
import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';

/**
 * A part of the directory: the users holding any of `roles` (when some are given) whose attributes match
 * every entry of `attributes`, each with any of the listed values (a list attribute matches by any item).
 * Values compare as text. At least one role or attribute is required: "everyone" is not a segment here.
 */
export interface SegmentQuery {
  roles: readonly string[];
  attributes: Readonly<Record<string, readonly string[]>>;
}

/** For each user in a segment: attribute name → the values of theirs that matched. */
export type SegmentUsers = Map<string, Map<string, Set<string>>>;

// Bound values per statement stay well inside SQLite's 32,766.
const VALUE_CHUNK = 1000;

/**
 * The users of a segment, found through the role and attribute indexes in one statement (more only when the
 * first attribute lists over a thousand values). Callers that need several narrower segments of the same
 * shape (the router: one per event) ask once with the union of their values and filter the answer.
 */
export async function findSegmentUsers(db: Db, query: SegmentQuery): Promise<SegmentUsers> {
  const names = Object.keys(query.attributes).sort();
  const out: SegmentUsers = new Map();
  if (names.length === 0) {
    if (query.roles.length === 0) throw new Error('a segment needs a role or an attribute');
    const rows = await db
      .selectFrom('user_roles')
      .select('user_id')
      .distinct()
      .where('role', 'in', [...query.roles])
      .execute();
    for (const row of rows) out.set(row.user_id, new Map());
    return out;
  }
  const first = [...new Set(query.attributes[names[0]!])];
  for (const chunk of chunks(first, VALUE_CHUNK)) {
    const values = { ...query.attributes, [names[0]!]: chunk };
    const result = await segmentStatement(names, values, query.roles).execute(db);
    for (const row of result.rows) {
      let matched = out.get(row.user_id);
      if (matched === undefined) {
        matched = new Map(names.map((name) => [name, new Set<string>()]));
        out.set(row.user_id, matched);
      }
      names.forEach((name, n) => {
        matched.get(name)!.add(row[`v${n}`]!);
      });
    }
  }
  return out;
}

/** `select a0.user_id, a0.value v0, a1.value v1 ... from user_attributes a0 join user_attributes a1 ...`. */
function segmentStatement(
  names: string[],
  values: Readonly<Record<string, readonly string[]>>,
  roles: readonly string[],
): RawBuilder<{ user_id: string } & Record<string, string>> {
  const alias = (n: number) => sql.raw(`a${n}`);
  const columns = names.map((_, n) => sql`${alias(n)}.value as ${sql.raw(`v${n}`)}`);
  const joins = names.slice(1).map(
    (name, i) =>
      sql`join user_attributes ${alias(i + 1)} on ${alias(i + 1)}.user_id = a0.user_id
        and ${alias(i + 1)}.name = ${name} and ${alias(i + 1)}.value in (${list(values[name]!)})`,
  );
  const roleFilter =
    roles.length === 0
      ? sql``
      : sql`and exists (select 1 from user_roles r where r.user_id = a0.user_id and r.role in (${list(roles)}))`;
  return sql`select a0.user_id as user_id, ${sql.join(columns)}
    from user_attributes a0 ${sql.join(joins, sql` `)}
    where a0.name = ${names[0]!} and a0.value in (${list(values[names[0]!]!)}) ${roleFilter}`;
}

const list = (items: readonly string[]) => sql.join([...new Set(items)]);
