import { Type } from 'typebox';
import { type Actor, appendAudit } from '../audit/audit.repo.ts';
import { USER_CHANNELS } from '../channels/registry.ts';
import type { Db } from '../db/engine.ts';
import type { App, Deps } from '../deps.ts';
import { findUser } from '../directory/users.repo.ts';
import { UserParams } from '../directory/users.schema.ts';
import { type FieldProblem, invalidMany, notFound } from '../errors.ts';
import type { Principal } from '../http/auth.ts';
import { security } from '../http/schemas.ts';
import { DigestPreference, QuietHours } from '../noise/options.ts';
import { getNoiseSettings, type NoiseSettings, updateNoiseSettings } from '../noise/settings.repo.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import { listPreferences, type Preference, replacePreferences } from './preferences.repo.ts';

const tags = ['preferences'];
const MAX_PREFERENCES = 200;

/** Channels a preference may name: the ones that reach a person, or `*` for all of them. */
export const PREFERENCE_CHANNELS: readonly string[] = [...USER_CHANNELS, '*'];

const PreferenceShape = Type.Object(
  {
    category: Type.String({
      minLength: 1,
      maxLength: 200,
      pattern: TYPE_PATTERN_REGEX,
      description: 'An event type or pattern, as in rules: `po.approval_requested`, `po.*`, `*`',
    }),
    channel: Type.String({
      minLength: 1,
      maxLength: 16,
      description:
        '`email`, `push`, `sms` or `*` (all of them). Not `inapp`: the inbox always keeps a record of ' +
        'every notification',
    }),
    enabled: Type.Boolean(),
  },
  { additionalProperties: false },
);

const Preferences = Type.Object(
  {
    preferences: Type.Array(PreferenceShape, { maxItems: MAX_PREFERENCES }),
    quiet_hours: Type.Optional(
      Type.Union([QuietHours, Type.Null()], {
        description:
          'Email, push and SMS of non-critical events wait until the end of this period (in the user’s ' +
          'time zone); the inbox gets them at once. Left out of a PUT: unchanged; null: none. Shown when set',
      }),
    ),
    digest: Type.Optional(
      Type.Union([DigestPreference, Type.Null()], {
        description:
          'Non-critical events of these categories are collected and sent as one summary at the cadence. ' +
          'Left out of a PUT: unchanged; null: none. Shown when set',
      }),
    ),
  },
  { additionalProperties: false },
);

type PreferencesBody = {
  preferences: Preference[];
  quiet_hours?: QuietHours | null;
  digest?: DigestPreference | null;
};

/** A user's preferences as the API shows them: the list, and quiet hours and digest when set. */
async function view(db: Db, userId: string, settings?: NoiseSettings) {
  const noise = settings ?? (await getNoiseSettings(db, userId));
  return {
    preferences: await listPreferences(db, userId),
    ...(noise.quiet_hours === null ? {} : { quiet_hours: noise.quiet_hours }),
    ...(noise.digest === null ? {} : { digest: noise.digest }),
  };
}

const DESCRIPTION = [
  'The most specific preference that fits an event decides: an exact type beats a pattern, a longer pattern',
  'a shorter one, and a named channel `*`. Without one, the channels the rules chose apply.',
  'Critical events are sent regardless. The inbox always gets the notification.',
  'Quiet hours (`HH:MM` in the user’s time zone) defer email, push and SMS of non-critical events to their end.',
].join(' ');

/** The user id of a request that passed `auth.require('user')`. */
const me = (principal: Principal): string => (principal as Extract<Principal, { kind: 'user' }>).userId;

/**
 * Notification preferences: a user's own (`/me/preferences`, user tokens) and any user's for the admin
 * (`/users/{id}/preferences`). A PUT replaces the whole list.
 */
export async function preferencesRoutes(app: App, deps: Deps): Promise<void> {
  const user = deps.auth.require('user');
  const admin = deps.auth.require('admin');

  /** Replaces `userId`'s preferences and audits it in one transaction; 404 when the user does not exist. */
  const save = (userId: string, body: PreferencesBody, actor: Actor) => {
    const { preferences: list, ...noise } = body;
    checkPreferences(list, noise.quiet_hours);
    const now = deps.clock.now();
    return deps.store.db.transaction().execute(async (trx) => {
      if ((await findUser(trx, userId)) === undefined) throw notFound('User', userId);
      await replacePreferences(trx, userId, list, now);
      const settings = await updateNoiseSettings(trx, userId, noise, now);
      await appendAudit(trx, {
        at: now,
        actor,
        action: 'preferences.updated',
        subject_type: 'user',
        subject_id: userId,
        data: body,
      });
      return view(trx, userId, settings);
    });
  };

  app.get(
    '/me/preferences',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: 'My notification preferences',
        description: DESCRIPTION,
        response: { 200: Preferences },
      },
    },
    async (request) => view(deps.store.db, me(request.principal)),
  );

  app.put(
    '/me/preferences',
    {
      preHandler: user,
      schema: {
        tags,
        security,
        summary: `Replace my notification preferences (at most ${MAX_PREFERENCES})`,
        description: DESCRIPTION,
        body: Preferences,
        response: { 200: Preferences },
      },
    },
    async (request) => {
      const userId = me(request.principal);
      return save(userId, request.body, `user:${userId}`);
    },
  );

  app.get(
    '/users/:id/preferences',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: "A user's notification preferences",
        description: DESCRIPTION,
        params: UserParams,
        response: { 200: Preferences },
      },
    },
    async (request) => {
      const { id } = request.params;
      if ((await findUser(deps.store.db, id)) === undefined) throw notFound('User', id);
      return view(deps.store.db, id);
    },
  );

  app.put(
    '/users/:id/preferences',
    {
      preHandler: admin,
      schema: {
        tags,
        security,
        summary: `Replace a user's notification preferences (at most ${MAX_PREFERENCES})`,
        description: DESCRIPTION,
        params: UserParams,
        body: Preferences,
        response: { 200: Preferences },
      },
    },
    async (request) => save(request.params.id, request.body, 'admin'),
  );
}

/** Known channels only, no `inapp`, each (category, channel) once, and quiet hours that last a while. */
function checkPreferences(list: Preference[], quiet: QuietHours | null | undefined): void {
  const problems: FieldProblem[] = [];
  if (quiet && quiet.start === quiet.end) {
    problems.push({ field: 'body.quiet_hours.end', message: 'must differ from start' });
  }
  const seen = new Map<string, number>();
  list.forEach((pref, i) => {
    const field = `body.preferences.${i}`;
    if (pref.channel === 'inapp') {
      problems.push({
        field: `${field}.channel`,
        message: 'cannot be "inapp": the inbox always keeps a record of every notification',
      });
    } else if (!PREFERENCE_CHANNELS.includes(pref.channel)) {
      problems.push({
        field: `${field}.channel`,
        message: `"${pref.channel}" is not a known channel (known: ${PREFERENCE_CHANNELS.join(', ')})`,
      });
    }
    const key = `${pref.category}\u0000${pref.channel}`;
    const first = seen.get(key);
    if (first === undefined) seen.set(key, i);
    else problems.push({ field, message: `repeats body.preferences.${first} (same category and channel)` });
  });
  if (problems.length > 0) throw invalidMany(problems);
}
