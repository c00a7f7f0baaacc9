import { REDACTED } from '../audit/redact.ts';
import type { CredentialRow } from '../auth/credentials.repo.ts';
import { iso } from '../clock.ts';
import type { SourceRow } from '../db/tables.ts';

/**
 * The API shape of a source, its callback secret redacted: it is shown on purpose only (when the source is
 * created, and by `GET /sources/{id}/callback-secret`).
 */
export function presentSource(row: SourceRow) {
  return {
    id: row.id,
    name: row.name,
    callback_url: row.callback_url,
    callback_secret: row.callback_secret === null ? null : REDACTED,
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
}

/** The API shape of an API key: metadata only, never the hash. */
export function presentKey(row: CredentialRow) {
  return {
    id: row.id,
    prefix: row.prefix,
    name: row.name,
    created_at: iso(row.created_at),
    revoked_at: iso(row.revoked_at),
  };
}
