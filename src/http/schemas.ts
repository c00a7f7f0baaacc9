import { Type } from 'typebox';

/** The OpenAPI security requirement of every authenticated route: a bearer token. */
export const security = [{ bearer: [] }];

/** The empty body of a `204` after a delete. */
export const Deleted = Type.Null({ description: 'Deleted' });
