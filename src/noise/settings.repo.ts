import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { DigestPreference, QuietHours } from './options.ts';

/** A user's noise settings: quiet hours and a digest preference, each null when not set. */
export interface NoiseSettings {
  quiet_hours: QuietHours | null;
  digest: DigestPreference | null;
}

/** What routing needs to know about a recipient: their settings and time zone. */
export interface RecipientNoise extends NoiseSettings {
  timezone: string | null;
}

export async function getNoiseSettings(db: Db, userId: string): Promise<NoiseSettings> {
  const row = await db
    .selectFrom('noise_settings')
    .select(['quiet_hours', 'digest'])
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return parse(row);
}

/** Changes the settings given (undefined leaves one as it is, null clears it); returns the result. */
export async function updateNoiseSettings(
  db: Db,
  userId: string,
  change: { quiet_hours?: QuietHours | null; digest?: DigestPreference | null },
  now: number,
): Promise<NoiseSettings> {
  const current = await getNoiseSettings(db, userId);
  const next: NoiseSettings = {
    quiet_hours: change.quiet_hours === undefined ? current.quiet_hours : change.quiet_hours,
    digest: change.digest === undefined ? current.digest : change.digest,
  };
  if (next.quiet_hours === null && next.digest === null) {
    await db.deleteFrom('noise_settings').where('user_id', '=', userId).execute();
    return next;
  }
  const values = {
    quiet_hours: next.quiet_hours === null ? null : JSON.stringify(next.quiet_hours),
    digest: next.digest === null ? null : JSON.stringify(next.digest),
    updated_at: now,
  };
  await db
    .insertInto('noise_settings')
    .values({ user_id: userId, ...values })
    .onConflict((oc) => oc.column('user_id').doUpdateSet(values))
    .execute();
  return next;
}

const CHUNK = 5000;

/**
 * The settings and time zone of each of `userIds` that has any settings (a few queries per batch, not per
 * user); users without settings are left out.
 */
export async function loadRecipientNoise(
  db: Db,
  userIds: readonly string[],
): Promise<Map<string, RecipientNoise>> {
  const out = new Map<string, RecipientNoise>();
  if (userIds.length === 0) return out;
  // Most installations have few users with settings: one cheap look spares a lookup per slice of recipients.
  const any = await db.selectFrom('noise_settings').select('user_id').limit(1).executeTakeFirst();
  if (any === undefined) return out;
  for (const chunk of chunks(userIds, CHUNK)) {
    const rows = await db
      .selectFrom('noise_settings')
      .innerJoin('users', 'users.id', 'noise_settings.user_id')
      .select(['noise_settings.user_id', 'quiet_hours', 'digest', 'users.timezone'])
      .where('noise_settings.user_id', 'in', chunk)
      .execute();
    for (const row of rows) out.set(row.user_id, { ...parse(row), timezone: row.timezone });
  }
  return out;
}

function parse(row: { quiet_hours: string | null; digest: string | null } | undefined): NoiseSettings {
  return {
    quiet_hours: row?.quiet_hours == null ? null : (JSON.parse(row.quiet_hours) as QuietHours),
    digest: row?.digest == null ? null : (JSON.parse(row.digest) as DigestPreference),
  };
}

/** The time zones of `userIds` (null when a user has none), for digests due at a local time. */
export async function loadTimezones(db: Db, userIds: readonly string[]): Promise<Map<string, string | null>> {
  const out = new Map<string, string | null>();
  for (const chunk of chunks(userIds, CHUNK)) {
    const rows = await db.selectFrom('users').select(['id', 'timezone']).where('id', 'in', chunk).execute();
    for (const row of rows) out.set(row.id, row.timezone);
  }
  return out;
}
