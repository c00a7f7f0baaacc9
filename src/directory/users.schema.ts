import { Type } from 'typebox';
import { PageQuery } from '../http/pagination.ts';

/*
 * Request and response schemas of the directory's users. They document the API and give Fastify a first
 * check; `users.validate.ts` is the authority on what a user may hold (it also names each bad field).
 */

/** User and group ids: come from other directories, so a little wider than source ids (`@`, `+` allowed). */
export const DirectoryId = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._@+-]*$',
  description: 'Letters, digits, `.`, `_`, `@`, `+`, `-`; starts with a letter or digit',
});

// Null comes first in each union: the app's Ajv coerces types, and a string branch first would turn null
// into "". Attribute values are left to users.validate.ts for the same reason (5 would become "5").
const nullable = (schema: ReturnType<typeof Type.String>) => Type.Optional(Type.Union([Type.Null(), schema]));

const UserFields = {
  name: Type.String({ minLength: 1, maxLength: 200 }),
  email: nullable(Type.String({ maxLength: 254, description: 'Stored in lower case' })),
  phone: nullable(Type.String({ maxLength: 32 })),
  locale: nullable(Type.String({ maxLength: 35, description: 'A BCP 47 language tag, e.g. `de-CH`' })),
  timezone: nullable(Type.String({ maxLength: 64, description: 'An IANA time zone, e.g. `Europe/Berlin`' })),
  manager: nullable(
    Type.String({ maxLength: 128, description: "The manager's user id (may not exist yet)" }),
  ),
  roles: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      maxItems: 50,
      description: 'What the person does (`finance`, `warehouse`); rules and segments address people by role',
    }),
  ),
  attributes: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), {
      description:
        'Up to 50 attributes (role, location, business unit ...): string, number, boolean or string[]',
    }),
  ),
};

export const UserParams = Type.Object({ id: DirectoryId });

/** The body of `PUT /users/{id}`: the whole user (fields left out are cleared). */
export const UserBody = Type.Object(
  {
    id: Type.Optional(Type.String({ description: 'Optional; must equal the id in the path' })),
    ...UserFields,
  },
  { additionalProperties: false },
);

export const BulkUsersBody = Type.Object(
  {
    users: Type.Array(Type.Object({ id: DirectoryId, ...UserFields }, { additionalProperties: false }), {
      minItems: 1,
      maxItems: 10_000,
    }),
  },
  { additionalProperties: false },
);

export const BulkUsersResult = Type.Object({
  created: Type.Integer(),
  updated: Type.Integer(),
});

const text = Type.Union([Type.String(), Type.Null()]);

export const User = Type.Object({
  id: Type.String(),
  name: Type.String(),
  email: text,
  phone: text,
  locale: text,
  timezone: text,
  manager: text,
  roles: Type.Array(Type.String()),
  attributes: Type.Record(Type.String(), Type.Unknown()),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const UsersQuery = Type.Object(
  {
    ...PageQuery,
    email: Type.Optional(Type.String({ maxLength: 254, description: 'Exact match, ignoring case' })),
    role: Type.Optional(Type.String({ maxLength: 64, description: 'Users holding this role' })),
  },
  {
    additionalProperties: Type.String({ maxLength: 500 }),
    description:
      '`attr.<name>=<value>` keeps users whose attribute equals the value (or, for lists, holds it)',
  },
);
