import type { Db } from '../db/engine.ts';
import type { TemplateRow } from '../db/tables.ts';

/** A template as the API shows it: its types parsed, times in ms. */
export interface Template {
  id: string;
  types: string[];
  channel: string;
  locale: string;
  subject: string | null;
  text: string;
  html: string | null;
  created_at: number;
  updated_at: number;
}

/** A template row as the API shows it. */
export function parseTemplateRow(row: TemplateRow): Template {
  return {
    id: row.id,
    types: JSON.parse(row.types) as string[],
    channel: row.channel,
    locale: row.locale,
    subject: row.subject,
    text: row.text,
    html: row.html,
    created_at: Number(row.created_at),
    updated_at: Number(row.updated_at),
  };
}

/** Creates or replaces a template (keeping `created_at` of one that existed); returns whether it was created. */
export async function upsertTemplate(
  db: Db,
  template: Omit<Template, 'created_at' | 'updated_at'>,
  now: number,
): Promise<boolean> {
  const existed = await db
    .selectFrom('templates')
    .select('id')
    .where('id', '=', template.id)
    .executeTakeFirst();
  const row = { ...template, types: JSON.stringify(template.types), updated_at: now };
  await db
    .insertInto('templates')
    .values({ ...row, created_at: now })
    .onConflict((oc) => oc.column('id').doUpdateSet(row))
    .execute();
  return existed === undefined;
}

export async function findTemplate(db: Db, id: string): Promise<TemplateRow | undefined> {
  return db.selectFrom('templates').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Templates in id order after `after`, only those stored for `channel` when given; at most `limit`. */
export async function listTemplates(
  db: Db,
  page: { after: string | undefined; channel: string | undefined; limit: number },
): Promise<TemplateRow[]> {
  let query = db.selectFrom('templates').selectAll();
  if (page.after !== undefined) query = query.where('id', '>', page.after);
  if (page.channel !== undefined) query = query.where('channel', '=', page.channel);
  return query.orderBy('id').limit(page.limit).execute();
}

/** Every template: what delivery chooses from. */
export async function allTemplates(db: Db): Promise<TemplateRow[]> {
  return db.selectFrom('templates').selectAll().orderBy('id').execute();
}

/** Deletes a template; returns whether it existed. */
export async function deleteTemplate(db: Db, id: string): Promise<boolean> {
  const result = await db.deleteFrom('templates').where('id', '=', id).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}
