import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type FieldProblem, HeraldError, toProblem } from '../errors.ts';

/** Sends a HeraldError as `application/problem+json`. */
export function sendProblem(reply: FastifyReply, error: HeraldError, instance?: string): FastifyReply {
  return reply.code(error.status).type('application/problem+json').send(toProblem(error, instance));
}

interface AjvIssue {
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Maps whatever was thrown while serving a request onto the error registry. */
export function classify(error: unknown): HeraldError {
  if (error instanceof HeraldError) return error;
  const e = error as FastifyError & { validation?: AjvIssue[]; validationContext?: string };
  if (Array.isArray(e.validation)) {
    const part = e.validationContext === 'querystring' ? 'query' : (e.validationContext ?? 'body');
    const errors: FieldProblem[] = e.validation.map((issue) => {
      const path = (issue.instancePath ?? '').split('/').filter(Boolean).join('.');
      const missing = issue.params?.['missingProperty'];
      const extra = issue.params?.['additionalProperty'];
      const leaf = typeof missing === 'string' ? missing : typeof extra === 'string' ? extra : '';
      const field = [part, path, leaf].filter(Boolean).join('.');
      const message = typeof extra === 'string' ? 'is not a known field' : (issue.message ?? 'is invalid');
      return { field, message };
    });
    const first = errors[0];
    return new HeraldError('validation_failed', first ? `${first.field} ${first.message}` : undefined, {
      errors,
    });
  }
  switch (e.code) {
    case 'FST_ERR_BAD_URL':
      return new HeraldError('validation_failed', 'The URL is not validly percent-encoded');
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new HeraldError('uri_too_long');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new HeraldError('payload_too_large');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new HeraldError('unsupported_media_type', 'Send JSON (Content-Type: application/json)');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new HeraldError('malformed_json', e.message);
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
    case 'FST_ERR_CTP_INVALID_TYPE':
      return new HeraldError('validation_failed', e.message);
  }
  if (isDataException(error)) {
    return new HeraldError(
      'validation_failed',
      'The request holds a value the database cannot store, such as a NUL character',
    );
  }
  if (error instanceof SyntaxError || e.statusCode === 400)
    return new HeraldError('malformed_json', e.message);
  if (e.statusCode === 413) return new HeraldError('payload_too_large');
  if (e.statusCode === 415) return new HeraldError('unsupported_media_type');
  if (e.statusCode === 404) return new HeraldError('route_not_found');
  if (e.statusCode === 405) return new HeraldError('method_not_allowed');
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new HeraldError('validation_failed', e.message);
  }
  return new HeraldError('internal', 'Herald could not complete this request', { cause: error });
}

/**
 * Errors Fastify raises before routing (a badly encoded URL, an over-long path parameter); passed to Fastify
 * as its `frameworkErrors` option so they leave as problem+json too.
 */
export function frameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  sendProblem(reply, classify(error), request.url.split('?')[0]);
}

/** Installs the error and not-found handlers: every failure leaves as problem+json. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const problem = classify(error);
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(reply, problem, request.url.split('?')[0]);
  });
  const routes = routeTable(app);
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    // A path Herald serves, asked with another method: 405, naming the methods it takes (RFC 9110 15.5.6).
    const allowed = routes.methodsFor(path);
    if (allowed.length > 0) {
      reply.header('allow', allowed.join(', '));
      return sendProblem(
        reply,
        new HeraldError('method_not_allowed', `${path} takes ${allowed.join(', ')}, not ${request.method}`),
      );
    }
    return sendProblem(reply, new HeraldError('route_not_found', `No route ${request.method} ${path}`));
  });
}

/**
 * The paths of the routes registered from here on, as patterns, with their methods: so a request that matched
 * no route can be told apart as a wrong method on a path that exists.
 */
function routeTable(app: FastifyInstance) {
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = [route.method].flat();
    // `:name` takes one segment, `*` the rest; everything else is literal.
    const source = route.url
      .split(/(:[A-Za-z0-9_]+|\*)/)
      .map((part) =>
        part === '*' ? '.*' : part.startsWith(':') ? '[^/]+' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
      )
      .join('');
    routes.push({ pattern: new RegExp(`^${source}$`), methods });
  });
  return {
    methodsFor(path: string): string[] {
      const methods = routes.filter((r) => r.pattern.test(path)).flatMap((r) => r.methods);
      return [...new Set(methods)].sort();
    },
  };
}

/** PostgreSQL's data exceptions (SQLSTATE class 22: a NUL in text, a number out of range) are the input's fault. */
function isDataException(error: unknown): boolean {
  const e = error as { code?: unknown; severity?: unknown };
  return typeof e.code === 'string' && /^22[0-9A-Z]{3}$/.test(e.code) && typeof e.severity === 'string';
}
