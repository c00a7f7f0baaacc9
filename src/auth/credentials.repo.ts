import type { Selectable } from 'kysely';
import type { Db } from '../db/engine.ts';
import type { CredentialsTable } from '../db/tables.ts';
import { hashToken, newId, newToken } from '../ids.ts';

export type CredentialKind = CredentialsTable['kind'];
export type CredentialRow = Selectable<CredentialsTable>;

const TOKEN_PREFIX: Record<CredentialKind, string> = { admin: 'hrd_adm', source: 'hrd_src', user: 'hrd_usr' };

/** Creates a credential and returns the token, which is stored only as a hash and shown only now. */
export async function createCredential(
  db: Db,
  input: {
    kind: CredentialKind;
    ownerId: string | null;
    name?: string | null;
    expiresAt?: number | null;
    now: number;
  },
): Promise<{ token: string; credential: CredentialRow }> {
  const token = newToken(TOKEN_PREFIX[input.kind]);
  const credential: CredentialRow = {
    id: newId('key', input.now),
    kind: input.kind,
    owner_id: input.ownerId,
    hash: hashToken(token),
    prefix: token.slice(0, 12),
    name: input.name ?? null,
    created_at: input.now,
    expires_at: input.expiresAt ?? null,
    revoked_at: null,
  };
  await db.insertInto('credentials').values(credential).execute();
  return { token, credential };
}

export async function findCredentialByToken(db: Db, token: string): Promise<CredentialRow | undefined> {
  return db.selectFrom('credentials').selectAll().where('hash', '=', hashToken(token)).executeTakeFirst();
}

export async function listCredentials(
  db: Db,
  kind: CredentialKind,
  ownerId: string,
): Promise<CredentialRow[]> {
  return db
    .selectFrom('credentials')
    .selectAll()
    .where('kind', '=', kind)
    .where('owner_id', '=', ownerId)
    .orderBy('id')
    .execute();
}

/** Revokes one credential, or every live one of an owner when `id` is omitted; returns how many. */
export async function revokeCredentials(
  db: Db,
  filter: { kind: CredentialKind; ownerId: string | null; id?: string },
  now: number,
): Promise<number> {
  let query = db
    .updateTable('credentials')
    .set({ revoked_at: now })
    .where('kind', '=', filter.kind)
    .where('revoked_at', 'is', null);
  query =
    filter.ownerId === null
      ? query.where('owner_id', 'is', null)
      : query.where('owner_id', '=', filter.ownerId);
  if (filter.id !== undefined) query = query.where('id', '=', filter.id);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows);
}

export async function hasLiveAdminCredential(db: Db): Promise<boolean> {
  const row = await db
    .selectFrom('credentials')
    .select('id')
    .where('kind', '=', 'admin')
    .where('revoked_at', 'is', null)
    .executeTakeFirst();
  return row !== undefined;
}
