import { Ajv, type Options } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import { addTimeFormat } from './formats.ts';

const common: Options = { useDefaults: true, removeAdditional: false, allErrors: false, strict: false };

// Bodies are JSON and keep their types: `5` is not a string and `null` is not `""`. Query strings, path
// parameters and headers are text, so there values are coerced to the declared type (`?limit=10`).
const body = new Ajv({ ...common, coerceTypes: false });
const text = new Ajv({ ...common, coerceTypes: 'array' });
addFormats.default(body);
addFormats.default(text);
// ajv-formats lets through date-times that do not parse (a leap second); Herald's own check replaces it.
addTimeFormat(body);
addTimeFormat(text);

/** Fastify's validator compiler: strict JSON for bodies, coercing for the text parts of a request. */
export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? body : text).compile(schema);
