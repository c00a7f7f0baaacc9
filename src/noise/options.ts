import { type Static, Type } from 'typebox';
import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import type { FieldProblem } from '../errors.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import { CLOCK_PATTERN, DURATION_PATTERN, parseDuration } from './time.ts';

/*
 * The noise options of a rule (`rule.noise`) and of a user (digest), their API schemas and runtime form.
 */

const Duration = (description: string) =>
  Type.String({
    pattern: DURATION_PATTERN,
    maxLength: 12,
    description: `${description} (\`30s\`, \`5m\`, \`1h\`, \`1d\`)`,
  });

/** Where a group key is read from an event. */
export const KEY_PATH_REGEX = '^(source|type|severity|subject|data(\\.[A-Za-z0-9_-]+)+)$';

/** A digest cadence: every hour, or once a day at a time on the recipient's clock (users.timezone). */
export const Cadence = Type.Union(
  [
    Type.Literal('hourly'),
    Type.Object(
      {
        daily_at: Type.String({
          pattern: CLOCK_PATTERN,
          description: '`HH:MM` in the recipient’s time zone',
        }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: '`"hourly"` or `{"daily_at": "08:00"}` (the recipient’s local time)' },
);
export type Cadence = Static<typeof Cadence>;

/** The `noise` object of a rule. */
export const RuleNoise = Type.Object(
  {
    group: Type.Optional(
      Type.Object(
        {
          by: Type.Array(Type.String({ maxLength: 200, pattern: KEY_PATH_REGEX }), {
            minItems: 1,
            maxItems: 5,
            description:
              'What events of one group share: `source`, `type`, `severity`, `subject`, `data.<path>`',
          }),
          wait: Duration('How long the first event of a group waits for others'),
          interval: Type.Optional(
            Duration('After a group was sent, how long later events wait to be sent together'),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    throttle: Type.Optional(
      Type.Object(
        {
          max: Type.Integer({ minimum: 1, maximum: 10_000 }),
          per: Duration('The window; notifications beyond `max` in it are sent as one summary when it ends'),
        },
        { additionalProperties: false },
      ),
    ),
    digest: Type.Optional(Cadence),
  },
  {
    additionalProperties: false,
    description:
      'Noise control. At most one of group, digest and throttle applies to an event (in that order); ' +
      'critical events skip digests and throttling.',
  },
);
export type RuleNoise = Static<typeof RuleNoise>;

/** A user's digest preference: events of these categories (type patterns) wait for the digest. */
export const DigestPreference = Type.Object(
  {
    cadence: Cadence,
    categories: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
        minItems: 1,
        maxItems: 50,
        description: 'Event type patterns; all types when left out',
      }),
    ),
  },
  { additionalProperties: false },
);
export type DigestPreference = Static<typeof DigestPreference>;

/** A user's quiet hours, `HH:MM` in their time zone; `start` later than `end` spans midnight. */
export const QuietHours = Type.Object(
  {
    start: Type.String({ pattern: CLOCK_PATTERN }),
    end: Type.String({ pattern: CLOCK_PATTERN }),
  },
  { additionalProperties: false },
);
export type QuietHours = Static<typeof QuietHours>;

/** A rule's noise options with durations in ms. */
export interface NoisePolicy {
  group?: { by: string[]; waitMs: number; intervalMs: number | undefined };
  throttle?: { max: number; perMs: number };
  digest?: Cadence;
}

const LIMITS = { wait: 86_400_000, interval: 7 * 86_400_000, per: 7 * 86_400_000 };

/** Problems the schema cannot see: durations out of range. */
export function checkRuleNoise(noise: RuleNoise, field: string): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const within = (text: string | undefined, max: number, at: string) => {
    if (text !== undefined && (parseDuration(text) ?? Infinity) > max) {
      problems.push({ field: `${field}.${at}`, message: `must be at most ${max / 3_600_000} hours` });
    }
  };
  within(noise.group?.wait, LIMITS.wait, 'group.wait');
  within(noise.group?.interval, LIMITS.interval, 'group.interval');
  within(noise.throttle?.per, LIMITS.per, 'throttle.per');
  return problems;
}

/** The runtime form of stored noise options. */
export function toPolicy(noise: RuleNoise): NoisePolicy {
  const policy: NoisePolicy = {};
  if (noise.group) {
    policy.group = {
      by: noise.group.by,
      waitMs: parseDuration(noise.group.wait) ?? 0,
      intervalMs: noise.group.interval === undefined ? undefined : parseDuration(noise.group.interval),
    };
  }
  if (noise.throttle) {
    policy.throttle = { max: noise.throttle.max, perMs: parseDuration(noise.throttle.per) ?? 0 };
  }
  if (noise.digest) policy.digest = noise.digest;
  return policy;
}

/** Every rule with noise options, by id (disabled rules too: they reach nobody, so it does not matter). */
export async function loadRulePolicies(db: Db): Promise<Map<string, NoisePolicy>> {
  const rows = await db.selectFrom('rules').select(['id', 'noise']).where('noise', 'is not', null).execute();
  return new Map(rows.map((r) => [r.id, toPolicy(JSON.parse(r.noise!) as RuleNoise)]));
}

/** Reads a key path from an event: `source`, `type`, `severity`, `subject` or `data.<path>` (lists joined). */
export function keyValue(event: EventRow, data: unknown, path: string): string {
  switch (path) {
    case 'source':
      return event.source_id;
    case 'type':
      return event.type;
    case 'severity':
      return event.severity;
    case 'subject':
      return event.subject ?? '';
  }
  let value: unknown = data;
  for (const part of path.slice(5).split('.')) {
    value =
      value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
  }
  if (Array.isArray(value)) return value.map(String).join(',');
  return value === undefined || value === null || typeof value === 'object' ? '' : String(value);
}

/** Parses an event's data once (null when it has none or it is not JSON). */
export function eventData(event: EventRow): unknown {
  if (event.data === null) return null;
  try {
    return JSON.parse(event.data);
  } catch {
    return null;
  }
}
