import { insertInChunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import { redactSecrets } from './redact.ts';

/** Who did something: `admin`, `source:<id>`, `user:<id>` or `system`. */
export type Actor = 'admin' | 'system' | `source:${string}` | `user:${string}`;

export interface AuditEntry {
  at: number;
  actor: Actor;
  /** `<subject>.<verb>`, e.g. `event.ingested`, `delivery.succeeded`, `source.created`. */
  action: string;
  subject_type: string;
  subject_id: string;
  data?: unknown;
}

/** Appends entries to the audit log inside the caller's transaction, so they commit with the change. */
export async function appendAudit(db: Db, entries: AuditEntry | AuditEntry[]): Promise<void> {
  const list = Array.isArray(entries) ? entries : [entries];
  if (list.length === 0) return;
  const rows = list.map((e) => ({
    at: e.at,
    actor: e.actor,
    action: e.action,
    subject_type: e.subject_type,
    subject_id: e.subject_id,
    data: e.data === undefined ? null : JSON.stringify(e.data),
  }));
  // Every write path appends here: statements compiled once per row count (see db/bulk.ts).
  await insertInChunks(db, rows, (chunk) => db.insertInto('audit_log').values(chunk));
}

/**
 * Appends one change made through the admin API, inside the caller's transaction: `action` (`rule.created`)
 * on `subject` (its type and id), with what was set. Callers leave secrets out (or say only that one changed);
 * any value under a key that names a secret is redacted all the same.
 */
export function auditAdmin(
  db: Db,
  at: number,
  action: string,
  [subjectType, subjectId]: [type: string, id: string],
  data?: unknown,
): Promise<void> {
  return appendAudit(db, {
    at,
    actor: 'admin',
    action,
    subject_type: subjectType,
    subject_id: subjectId,
    data: redactSecrets(data),
  });
}

export interface AuditFilter {
  action?: string;
  actor?: string;
  subjectType?: string;
  subjectId?: string;
  since?: number;
  until?: number;
  /** Entries with an id below this (the page cursor; newest first). */
  before?: number;
  limit: number;
}

export async function listAudit(db: Db, filter: AuditFilter) {
  let query = db.selectFrom('audit_log').selectAll();
  if (filter.action !== undefined) {
    query = filter.action.endsWith('.*')
      ? query.where('action', 'like', `${filter.action.slice(0, -1)}%`)
      : query.where('action', '=', filter.action);
  }
  if (filter.actor !== undefined) query = query.where('actor', '=', filter.actor);
  if (filter.subjectType !== undefined) query = query.where('subject_type', '=', filter.subjectType);
  if (filter.subjectId !== undefined) query = query.where('subject_id', '=', filter.subjectId);
  if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
  if (filter.until !== undefined) query = query.where('at', '<', filter.until);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}
