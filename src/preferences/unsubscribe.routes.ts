import type { SwaggerTransform } from '@fastify/swagger';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { appendAudit } from '../audit/audit.repo.ts';
import { isUserChannel, type UserChannel } from '../channels/registry.ts';
import type { App, Deps } from '../deps.ts';
import { findUser } from '../directory/users.repo.ts';
import { HeraldError } from '../errors.ts';
import { escapeHtml, htmlPage, refuse } from '../http/page.ts';
import { TYPE_PATTERN_REGEX } from '../routing/patterns.ts';
import { type Keys, loadKeys, verifyToken } from '../settings/keys.ts';
import { listPreferences, setPreference } from './preferences.repo.ts';

const tags = ['preferences'];
const TYPE = new RegExp(TYPE_PATTERN_REGEX);
const WHAT: Record<UserChannel, string> = {
  email: 'emails',
  push: 'push notifications',
  sms: 'text messages',
};

/** What an unsubscribe link turns off: `channel` for events of type `category`, for one user. */
interface Link {
  userId: string;
  category: string;
  channel: UserChannel;
}

const Params = Type.Object({ '*': Type.String({ maxLength: 2048 }) });
const Html = {
  content: { 'text/html': { schema: Type.String() } },
};

// The route is a wildcard, not `/:token`: tokens are longer than the 100 characters the router allows a
// parameter, and it applies no such limit to a wildcard. The document shows it as `{token}`.
const swaggerTransform: SwaggerTransform = ({ schema, url }) => ({
  schema: {
    ...schema,
    params: Type.Object({ token: Type.String({ description: 'The signed token of the link' }) }),
  },
  url: url.replace(/\*$/, ':token'),
});

/**
 * One-click unsubscribe (RFC 8058) for the links in Herald's emails (`List-Unsubscribe` and the footer).
 * The token is the authority; no credentials are needed. GET only shows a page with a button (link scanners
 * and prefetchers follow GETs, so a GET changes nothing); the button, or the mail provider, POSTs
 * `List-Unsubscribe=One-Click` and that turns the channel off for the event type. Repeating the POST changes
 * nothing more. A link of a user deleted since answers the same confirmation and writes nothing: a deleted
 * user receives no notifications at all.
 */
export async function unsubscribeRoutes(app: App, deps: Deps): Promise<void> {
  let keys: Keys | undefined;
  const link = async (request: FastifyRequest<{ Params: { '*': string } }>) => {
    keys ??= await loadKeys(deps.store.db);
    return readLink(keys, request.params['*']);
  };

  // This scope takes form posts only; the JSON parser does not apply here. Mail providers send
  // x-www-form-urlencoded; RFC 8058's own example (section 8.1) is multipart/form-data.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_r, body, done) =>
    done(null, new URLSearchParams(body as string)),
  );
  app.addContentTypeParser(
    'multipart/form-data',
    { parseAs: 'buffer' },
    (request: FastifyRequest, body: Buffer) => multipartFields(String(request.headers['content-type']), body),
  );
  app.addContentTypeParser('*', (_request, _payload, done) =>
    done(
      new HeraldError(
        'unsupported_media_type',
        'Send List-Unsubscribe=One-Click as an HTML form (application/x-www-form-urlencoded, RFC 8058)',
      ),
    ),
  );

  app.get(
    '/unsubscribe/*',
    {
      config: { swaggerTransform },
      schema: {
        tags,
        summary: 'The page of an unsubscribe link: says what it turns off, with a button (changes nothing)',
        params: Params,
        response: { 200: { description: 'An HTML page with a form that POSTs to the same URL', ...Html } },
      },
    },
    async (request, reply) => {
      const found = await link(request);
      if (found === undefined) return refuse(request, reply, new HeraldError('invalid_link'));
      const what = describe(found);
      return htmlPage(
        reply,
        200,
        'Unsubscribe',
        `<p>Stop ${what}?</p>
<form method="post" action="${escapeHtml(request.params['*'])}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe</button>
</form>
<p class="note">They stay in your notification inbox.</p>`,
      );
    },
  );

  app.post(
    '/unsubscribe/*',
    {
      config: { swaggerTransform },
      schema: {
        tags,
        summary: 'One-click unsubscribe (RFC 8058): turns the channel off for the event type of the link',
        description:
          'The body is `List-Unsubscribe=One-Click` as `application/x-www-form-urlencoded` or ' +
          '`multipart/form-data`, or empty. Idempotent. Critical events are still sent.',
        params: Params,
        response: { 200: { description: 'An HTML confirmation', ...Html } },
      },
    },
    async (request, reply) => {
      const found = await link(request);
      if (found === undefined) return refuse(request, reply, new HeraldError('invalid_link'));
      const body = request.body;
      if (body instanceof URLSearchParams && body.size > 0 && body.get('List-Unsubscribe') !== 'One-Click') {
        return refuse(
          request,
          reply,
          new HeraldError('validation_failed', 'The body must be List-Unsubscribe=One-Click (RFC 8058)', {
            errors: [{ field: 'body', message: 'must be List-Unsubscribe=One-Click' }],
          }),
        );
      }
      await unsubscribe(deps, found);
      return htmlPage(
        reply,
        200,
        'Unsubscribed',
        `<p>You will get no more ${describe(found)}.</p>
<p class="note">They stay in your notification inbox; urgent ones are still sent.</p>`,
      );
    },
  );
}

/** Turns the link's channel off for its category, once, with its audit entry; nothing for a deleted user. */
async function unsubscribe(deps: Deps, { userId, category, channel }: Link): Promise<void> {
  const now = deps.clock.now();
  await deps.store.db.transaction().execute(async (trx) => {
    if ((await findUser(trx, userId)) === undefined) return;
    const current = await listPreferences(trx, userId);
    if (current.some((p) => p.category === category && p.channel === channel && !p.enabled)) return;
    await setPreference(trx, userId, { category, channel, enabled: false }, now);
    await appendAudit(trx, {
      at: now,
      actor: `user:${userId}`,
      action: 'preferences.unsubscribed',
      subject_type: 'user',
      subject_id: userId,
      data: { category, channel, via: 'one-click' },
    });
  });
}

/** The text fields of a multipart/form-data body (files are ignored). */
async function multipartFields(contentType: string, body: Buffer): Promise<URLSearchParams> {
  try {
    const form = await new Response(new Uint8Array(body), {
      headers: { 'content-type': contentType },
    }).formData();
    const fields = new URLSearchParams();
    for (const [name, value] of form) if (typeof value === 'string') fields.append(name, value);
    return fields;
  } catch (error) {
    throw new HeraldError('validation_failed', 'The multipart/form-data body does not parse', {
      cause: error,
    });
  }
}

/** The link a token stands for, or undefined when it was altered or does not say what to turn off. */
function readLink(keys: Keys, token: string): Link | undefined {
  const payload = verifyToken(keys.linkSecret, token);
  const { u, c, ch } = payload ?? {};
  if (typeof u !== 'string' || typeof c !== 'string' || typeof ch !== 'string') return undefined;
  if (!isUserChannel(ch) || !TYPE.test(c)) return undefined;
  return { userId: u, category: c, channel: ch };
}

function describe(link: Link): string {
  return `${WHAT[link.channel]} about <strong>${escapeHtml(link.category)}</strong>`;
}
