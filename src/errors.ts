/**
 * The one registry of errors a client can see. Each has a stable `code`, an HTTP status and a title;
 * responses are RFC 9457 `application/problem+json`. `test/errors.test.ts` keeps this list and the
 * OpenAPI document in step.
 */
export const ERRORS = {
  malformed_json: { status: 400, title: 'The request body is not valid JSON' },
  validation_failed: { status: 400, title: 'The request does not match the schema' },
  bad_cursor: { status: 400, title: 'The pagination cursor is not valid' },
  unknown_reference: { status: 400, title: 'The request refers to something that does not exist' },
  unsafe_url: { status: 400, title: 'The URL is not allowed as an outbound target' },
  invalid_channel_config: { status: 400, title: 'The channel provider configuration cannot be used' },
  invalid_template: { status: 400, title: 'The template does not parse' },
  invalid_link: { status: 400, title: 'The link is not valid or has expired' },
  unknown_action: { status: 400, title: 'The notification does not offer this action' },
  unauthorized: { status: 401, title: 'Missing or invalid credentials' },
  forbidden: { status: 403, title: 'These credentials may not do this' },
  not_found: { status: 404, title: 'No such resource' },
  route_not_found: { status: 404, title: 'No such route' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'The resource is in a state that does not allow this' },
  idempotency_conflict: {
    status: 409,
    title: 'This event id or Idempotency-Key was already used with a different body',
  },
  already_responded: {
    status: 409,
    title: 'Someone has already responded, or the event was closed by its source',
  },
  already_taken: { status: 409, title: 'Another member has already taken this queue item' },
  payload_too_large: { status: 413, title: 'The request body is larger than the configured limit' },
  uri_too_long: { status: 414, title: 'A path segment of the URL is too long' },
  unsupported_media_type: { status: 415, title: 'This content type is not supported here' },
  internal: { status: 500, title: 'Internal error' },
  unavailable: { status: 503, title: 'Herald is not ready to serve this request' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERRORS;

/** One field-level problem, as reported in `errors` of a 400. */
export interface FieldProblem {
  field: string;
  message: string;
}

/** An error with a registry code; the HTTP layer turns it into problem+json. */
export class HeraldError extends Error {
  override name = 'HeraldError';
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldProblem[] | undefined;
  readonly extra: Record<string, unknown> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: { errors?: FieldProblem[]; extra?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(detail ?? ERRORS[code].title, { cause: options.cause });
    this.code = code;
    this.status = ERRORS[code].status;
    this.errors = options.errors;
    this.extra = options.extra;
  }
}

/** The RFC 9457 body for an error. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance?: string;
  errors?: FieldProblem[];
  [extension: string]: unknown;
}

/** Renders a {@link HeraldError} as an RFC 9457 problem document. */
export function toProblem(error: HeraldError, instance?: string): Problem {
  const problem: Problem = {
    type: `https://herald.dev/errors/${error.code}`,
    title: ERRORS[error.code].title,
    status: error.status,
    code: error.code,
    detail: error.message,
    ...error.extra,
  };
  if (instance !== undefined) problem.instance = instance;
  if (error.errors !== undefined) problem.errors = error.errors;
  return problem;
}

/** Shorthands for the most common errors. */
export const notFound = (what: string, id: string): HeraldError =>
  new HeraldError('not_found', `${what} "${id}" does not exist`);

export const invalid = (field: string, message: string): HeraldError =>
  new HeraldError('validation_failed', `${field}: ${message}`, { errors: [{ field, message }] });

/** A 400 listing several field problems at once. */
export const invalidMany = (problems: FieldProblem[]): HeraldError =>
  new HeraldError('validation_failed', problems.map((p) => `${p.field}: ${p.message}`).join('; '), {
    errors: problems,
  });
