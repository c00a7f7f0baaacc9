import { type Static, Type } from 'typebox';
import { CHAT_KINDS, RULE_CHANNELS } from '../channels/registry.ts';
import { DirectoryId } from '../directory/users.schema.ts';
import { HeraldError, invalid } from '../errors.ts';
import { Action, SEVERITIES } from '../events/events.schema.ts';
import { PageQuery } from '../http/pagination.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import { templateProblems } from './render.ts';

/** Channels a message is rendered for: the rules' channels and the chat endpoint kinds. */
export const MESSAGE_CHANNELS: readonly string[] = [...RULE_CHANNELS, ...CHAT_KINDS.keys()];

/** Channels a template may be stored for: one of {@link MESSAGE_CHANNELS}, or `*` for all of them. */
export const TEMPLATE_CHANNELS: readonly string[] = ['*', ...MESSAGE_CHANNELS];

const literals = (values: readonly string[], description: string) =>
  Type.Union(
    values.map((v) => Type.Literal(v)),
    { description },
  );

const TemplateChannel = literals(
  TEMPLATE_CHANNELS,
  `One of ${TEMPLATE_CHANNELS.map((c) => `\`${c}\``).join(', ')}`,
);

const Locale = Type.String({
  maxLength: 35,
  description: 'A BCP 47 language tag (`de-CH`), stored canonical; `""` for the default',
});

// Null comes first in each union, as in the other schemas (Ajv tries the branches in order).
const nullable = (schema: ReturnType<typeof Type.String>) => Type.Union([Type.Null(), schema]);

const Subject = Type.String({
  maxLength: 1000,
  description: 'The email subject, push title or chat heading; the event title when left out or empty',
});
const Text = Type.String({
  maxLength: 100_000,
  description: 'The plain-text body (SMS, push, email text part)',
});
const Html = Type.String({
  maxLength: 200_000,
  description: 'The HTML body (email); every output is escaped',
});

const Types = Type.Array(Type.String({ minLength: 1, maxLength: 200, pattern: TYPE_PATTERN_REGEX }), {
  minItems: 1,
  maxItems: 100,
  description: 'Event type patterns; `*` matches any run of characters (`po.*`)',
});

export const TemplateId = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
});
export const TemplateParams = Type.Object({ id: TemplateId });

/** The parts of a template, each LiquidJS. */
const Parts = {
  subject: Type.Optional(nullable(Subject)),
  text: Text,
  html: Type.Optional(nullable(Html)),
};

/** The body of `PUT /templates/{id}`: the whole template. */
export const TemplatePut = Type.Object(
  { types: Types, channel: TemplateChannel, locale: Type.Optional(Locale), ...Parts },
  { additionalProperties: false },
);

export const TemplateShape = Type.Object({
  id: Type.String(),
  types: Type.Array(Type.String()),
  channel: Type.String(),
  locale: Type.String({ description: '`""` for the default' }),
  subject: nullable(Type.String()),
  text: Type.String(),
  html: nullable(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const TemplateListQuery = Type.Object({
  ...PageQuery,
  channel: Type.Optional(
    literals(TEMPLATE_CHANNELS, 'Only templates stored for this channel (`*` lists those for every channel)'),
  ),
});

const PreviewEvent = Type.Object(
  {
    type: Type.String({ minLength: 1, maxLength: 200, pattern: '^[A-Za-z0-9_\\-]+(\\.[A-Za-z0-9_\\-]+)*$' }),
    source: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    subject: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    severity: Type.Optional(literals(SEVERITIES, 'Defaults to `info`')),
    title: Type.Optional(Type.String({ maxLength: 500 })),
    summary: Type.Optional(Type.String({ maxLength: 5000 })),
    url: Type.Optional(Type.String({ format: 'uri', maxLength: 2048, pattern: '^https?://' })),
    due_at: Type.Optional(Type.String({ format: 'date-time' })),
    time: Type.Optional(Type.String({ format: 'date-time', description: 'Defaults to now' })),
    data: Type.Optional(Type.Unknown()),
    actions: Type.Optional(Type.Array(Action, { maxItems: 10 })),
  },
  { additionalProperties: false, description: 'A sample event, as a source would publish it; not stored' },
);

/** The body of `POST /templates/preview`. */
export const PreviewBody = Type.Object(
  {
    template: Type.Optional(
      Type.Object(Parts, { additionalProperties: false, description: 'A template to try before saving it' }),
    ),
    template_id: Type.Optional(TemplateId),
    event: PreviewEvent,
    user_id: Type.Optional(DirectoryId),
    channel: Type.Optional(
      literals(
        MESSAGE_CHANNELS,
        "Defaults to the stored template's channel when it names one, otherwise `email`",
      ),
    ),
    locale: Type.Optional(Locale),
  },
  {
    additionalProperties: false,
    description:
      "With neither `template` nor `template_id`, the template delivery would choose for the event type, the channel and the locale (`locale`, else the user's)",
  },
);

export type PreviewBody = Static<typeof PreviewBody>;

export const PreviewResult = Type.Object({
  template_id: Type.Union([Type.Null(), Type.String()], {
    description: 'The stored template rendered; null for an inline template or when none fits',
  }),
  channel: Type.String(),
  locale: Type.Union([Type.Null(), Type.String()], { description: 'The locale the template was chosen for' }),
  subject: Type.String({ description: 'The email subject, push title or chat heading' }),
  text: Type.String(),
  html: Type.Union([Type.Null(), Type.String()]),
  template_error: Type.Union([Type.Null(), Type.String()], {
    description: 'Why the template failed to render; the other fields then hold the plain rendering',
  }),
});
export type PreviewResult = Static<typeof PreviewResult>;

/** The canonical form of a BCP 47 tag (`de-ch` → `de-CH`); `''` stays the default. Throws a 400 naming `field`. */
export function canonicalLocale(tag: string, field: string): string {
  if (tag === '') return '';
  try {
    const [canonical] = Intl.getCanonicalLocales(tag);
    if (canonical !== undefined) return canonical;
  } catch {
    // A RangeError: not a well-formed tag.
  }
  throw invalid(field, 'must be a BCP 47 language tag such as "de-CH", or "" for the default');
}

/** Throws `invalid_template` naming every part (`<prefix>.text`, ...) that does not parse, with line and column. */
export function assertParses(
  parts: { subject: string | null; text: string; html: string | null },
  prefix: string,
): void {
  const errors = templateProblems(parts).map((p) => ({ field: `${prefix}.${p.part}`, message: p.message }));
  if (errors.length > 0) {
    throw new HeraldError('invalid_template', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
      errors,
    });
  }
}
