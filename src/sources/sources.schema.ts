import { Type } from 'typebox';

/** Source ids: what sources publish as, so short, readable and URL-safe. */
export const SourceId = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$',
  description: 'Letters, digits, `.`, `_`, `-`; starts with a letter or digit',
});

const CallbackUrl = Type.String({
  minLength: 1,
  maxLength: 2048,
  description: 'Where responses are written back to (http or https)',
});

export const SourceParams = Type.Object({ id: SourceId });
export const KeyParams = Type.Object({ id: SourceId, keyId: Type.String({ minLength: 1, maxLength: 100 }) });

export const SourceCreate = Type.Object(
  {
    id: SourceId,
    name: Type.String({ minLength: 1, maxLength: 200 }),
    callback_url: Type.Optional(Type.Union([Type.Null(), CallbackUrl])),
  },
  { additionalProperties: false },
);

export const SourcePatch = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    // Null first: the app's Ajv coerces types, and a string branch first would turn null into "".
    callback_url: Type.Optional(Type.Union([Type.Null(), CallbackUrl], { description: 'null removes it' })),
  },
  { additionalProperties: false },
);

const SourceFields = {
  id: Type.String(),
  name: Type.String(),
  callback_url: Type.Union([Type.String(), Type.Null()]),
  callback_secret: Type.Union([Type.String(), Type.Null()], {
    description:
      'The `whsec_` secret write-backs are signed with (Standard Webhooks), as `"********"`; see `GET /v1/sources/{id}/callback-secret`',
  }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
};

export const Source = Type.Object(SourceFields);

export const SourceWithKey = Type.Object({
  ...SourceFields,
  callback_secret: Type.String({
    description: 'The `whsec_` secret write-backs are signed with (Standard Webhooks), shown in full here',
  }),
  api_key: Type.String({ description: 'The API key; shown only in this response, Herald keeps only a hash' }),
});

/** A source's callback secret, revealed on purpose. */
export const CallbackSecret = Type.Object({
  callback_secret: Type.Union([Type.String(), Type.Null()], {
    description: 'The `whsec_` secret write-backs are signed with; the source verifies them with it',
  }),
});

const KeyFields = {
  id: Type.String(),
  prefix: Type.String({ description: 'The first characters of the key, to tell keys apart' }),
  name: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Type.Union([Type.String({ format: 'date-time' }), Type.Null()]),
};

export const Key = Type.Object(KeyFields);

export const KeyWithSecret = Type.Object({
  ...KeyFields,
  api_key: Type.String({ description: 'The API key; shown only in this response' }),
});

export const KeyCreate = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    revoke_others: Type.Optional(
      Type.Boolean({ description: 'Revoke every other live key of the source in the same step (rotation)' }),
    ),
  },
  { additionalProperties: false },
);
