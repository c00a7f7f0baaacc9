import { Type } from 'typebox';

/** The OpenAPI security requirement of every authenticated route: a bearer token. */
export const security = [{ bearer: [] }];

/** The empty body of a `204` after a delete. */
export const Deleted = Type.Null({ description: 'Deleted' });

/** The same, typed for a handler that sends no body at all (`reply.code(204).send()`). */
export const DeletedNoBody = Type.Unsafe<undefined>(Deleted);
