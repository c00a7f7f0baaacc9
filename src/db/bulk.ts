import { type Compilable, CompiledQuery } from 'kysely';
import type { Db } from './engine.ts';

/*
 * Kysely turns every value of a multi-row statement into a node and compiles the whole statement again on each
 * call, and SQLite prepares a new statement for each row count it has not seen lately. For the router's
 * thousands of notifications per batch, or a batch of a thousand events, that cost rivalled the writing
 * itself. Here the statement text is compiled once per shape (the query, its columns, its row count) and the
 * rows go in chunks of a few fixed sizes, so the compiled text and the prepared statement are both reused.
 */

/** The most rows one statement writes: 256 rows of 30 columns stay far inside both engines' bound-value limits. */
const MOST_ROWS = 256;
// Compiled texts, keyed by the one-row text (which names the query and its dialect) and the row count.
const texts = new Map<string, string>();
const MOST_TEXTS = 500;

/**
 * Inserts `rows` with the insert `build` makes of them (for example `insertInto(...).values(rows)` with an
 * `onConflict` clause, and nothing else that takes a bound value); returns how many rows were inserted. Every
 * value must be a plain value, not an expression. A column a row leaves undefined takes its default, as it
 * does with Kysely on PostgreSQL. Row order is kept among rows that set the same columns.
 */
export async function insertInChunks<R extends object>(
  db: Db,
  rows: readonly R[],
  build: (rows: R[]) => Compilable<unknown>,
): Promise<number> {
  return (await writeInChunks(db, rows, build)).affected;
}

/**
 * Runs the statement `build` makes of `rows` in chunks, as {@link insertInChunks} does, for any statement that
 * binds each row's values in the order of its keys and nothing else: an insert with a `returning` clause, or an
 * `update ... from (values ...)` whose VALUES list `build` makes of the rows. Returns the rows the statements
 * returned, and how many rows they changed.
 */
export async function writeInChunks<R extends object, O = unknown>(
  db: Db,
  rows: readonly R[],
  build: (rows: R[]) => Compilable<O>,
): Promise<{ affected: number; rows: O[] }> {
  let affected = 0;
  const returned: O[] = [];
  for (const { columns, rows: group } of groupByColumns(rows)) {
    const template = Object.fromEntries(columns.map((column) => [column, column])) as R;
    const shape = build([template]).compile().sql;
    for (let first = 0; first < group.length; ) {
      const size = chunkSize(group.length - first);
      const parameters: unknown[] = [];
      for (const row of group.slice(first, first + size))
        for (const column of columns) parameters.push(row[column]);
      const text = statementText(
        `${shape}\n${size}`,
        () => build(new Array<R>(size).fill(template)),
        columns,
        size,
      );
      const result = await db.executeQuery<O>(CompiledQuery.raw(text, parameters));
      affected += Number(result.numAffectedRows ?? 0);
      for (const row of result.rows) returned.push(row);
      first += size;
    }
  }
  return { affected, rows: returned };
}

/** Full chunks, then the rest in falling powers of two: a handful of statement shapes in all. */
function chunkSize(left: number): number {
  return left >= MOST_ROWS ? MOST_ROWS : 2 ** Math.floor(Math.log2(left));
}

type Group = { columns: string[]; rows: Record<string, unknown>[] };

/** The rows by the columns they set, in the order of their keys; each group in the order given. */
function groupByColumns(rows: readonly object[]): Group[] {
  const groups = new Map<string, Group>();
  let last: Group | undefined;
  for (const row of rows as readonly Record<string, unknown>[]) {
    // Rows made by one function share their keys: most rows join the group of the row before them.
    if (last === undefined || !setsExactly(row, last.columns)) {
      const columns = Object.keys(row).filter((column) => row[column] !== undefined);
      const signature = columns.join(',');
      last = groups.get(signature);
      if (last === undefined) {
        last = { columns, rows: [] };
        groups.set(signature, last);
      }
    }
    last.rows.push(row);
  }
  return [...groups.values()];
}

/** Whether the row's keys are `columns`, in that order, none of them undefined. */
function setsExactly(row: Record<string, unknown>, columns: readonly string[]): boolean {
  const keys = Object.keys(row);
  if (keys.length !== columns.length) return false;
  for (let i = 0; i < keys.length; i++) {
    if (keys[i] !== columns[i] || row[keys[i]!] === undefined) return false;
  }
  return true;
}

/**
 * The text of the statement `template` builds (`size` rows of `columns`, each value its column's name), compiled
 * once per `key`. Throws if Kysely does not bind one value per column and row, in that order: the values are
 * bound to the cached text in that order.
 */
function statementText(
  key: string,
  template: () => Compilable<unknown>,
  columns: string[],
  size: number,
): string {
  let text = texts.get(key);
  if (text === undefined) {
    const { sql, parameters } = template().compile();
    const inOrder =
      parameters.length === size * columns.length &&
      parameters.every((value, i) => value === columns[i % columns.length]);
    if (!inOrder) throw new Error(`a statement of ${size} rows does not bind one value per column and row`);
    if (texts.size >= MOST_TEXTS) texts.clear();
    texts.set(key, sql);
    text = sql;
  }
  return text;
}

/** Ids per `in (...)` list (or rows per insert): far inside SQLite's 32,766 and PostgreSQL's 65,535 bound values. */
export const IDS_PER_LIST = 500;

/** `items` in consecutive slices of at most `size`: one statement's worth each. */
export function* chunks<T>(items: readonly T[], size = IDS_PER_LIST): Generator<T[]> {
  for (const [, chunk] of chunkEntries(items, size)) yield chunk;
}

/** {@link chunks} with the index in `items` of each slice's first item, as `[offset, slice]` pairs. */
export function* chunkEntries<T>(items: readonly T[], size = IDS_PER_LIST): Generator<[number, T[]]> {
  for (let i = 0; i < items.length; i += size) yield [i, items.slice(i, i + size)];
}
