import type { SwaggerTransform } from '@fastify/swagger';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { iso } from '../clock.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError } from '../errors.ts';
import { findEvent } from '../events/events.repo.ts';
import type { Principal } from '../http/auth.ts';
import { escapeHtml, htmlPage, refuse, wantsHtml } from '../http/page.ts';
import { security } from '../http/schemas.ts';
import { ActionResponse, Notification, presentNotification } from '../notifications/notifications.present.ts';
import { findNotification } from '../notifications/notifications.repo.ts';
import { type Keys, loadKeys } from '../settings/keys.ts';
import { type ActionLink, readActionLink } from './links.ts';
import { actionsOf } from './policy.ts';
import { type Responded, respond } from './respond.ts';
import { slackRoutes } from './slack.routes.ts';
import { actionViews } from './view.ts';

const RespondedBody = Type.Object({
  response: ActionResponse,
  notification: Notification,
});

const Comment = Type.Optional(Type.String({ maxLength: 5000 }));

// Tokens are longer than the 100 characters the router allows a parameter, so the route is a wildcard; the
// document shows it as `{token}` (as for unsubscribe links).
const swaggerTransform: SwaggerTransform = ({ schema, url }) => ({
  schema: {
    ...schema,
    params: Type.Object({ token: Type.String({ description: 'The signed token of the link' }) }),
  },
  url: url.replace(/\*$/, ':token'),
});
const TokenParams = Type.Object({ '*': Type.String({ maxLength: 2048 }) });
const Html = { content: { 'text/html': { schema: Type.String() } } };

/**
 * Responding to actionable notifications: from the inbox API (user token), from the signed links in emails
 * and push messages (the token is the authority; GET only shows a confirmation page, so link scanners change
 * nothing), and from Slack's interactive buttons.
 */
export async function actionsRoutes(app: App, deps: Deps): Promise<void> {
  app.post(
    '/me/notifications/:id/actions/:action',
    {
      preHandler: deps.auth.require('user'),
      // The body may be left out entirely: no comment.
      preValidation: async (request) => {
        request.body ??= {};
      },
      schema: {
        tags: ['inbox'],
        security,
        summary: 'Respond to one of my notifications with one of its actions',
        description:
          "Records the response, resolves the notification (and, as the event's response policy says, every " +
          'other recipient\'s: "handled by ...") and writes the response back to the source. Repeating the ' +
          'same action answers the same response again; any other late response is `already_responded`.',
        params: Type.Object({
          id: Type.String({ minLength: 1, maxLength: 100 }),
          action: Type.String({ minLength: 1, maxLength: 64 }),
        }),
        body: Type.Object({ comment: Comment }, { additionalProperties: false }),
        response: { 200: RespondedBody },
      },
    },
    async (request) => {
      const userId = (request.principal as Extract<Principal, { kind: 'user' }>).userId;
      const responded = await respond(deps, {
        userId,
        notificationId: request.params.id,
        action: request.params.action,
        comment: request.body.comment ?? null,
        via: 'api',
      });
      return answer(deps, responded);
    },
  );

  await app.register(async (scope) => linkRoutes(scope as App, deps));
  await app.register(async (scope) => slackRoutes(scope as App, deps));
}

async function answer(deps: Deps, responded: Responded) {
  const views = await actionViews(deps.store.db, [responded.notification]);
  const r = responded.response;
  return {
    response: {
      action: r.action,
      comment: r.comment,
      by: { id: r.user_id, name: (JSON.parse(r.responder) as { name: string }).name },
      at: iso(r.at),
    },
    notification: { ...presentNotification(responded.notification), ...views.get(responded.notification.id) },
  };
}

/** `GET /actions/{token}` (a confirmation page) and `POST /actions/{token}` (responds). */
async function linkRoutes(app: App, deps: Deps): Promise<void> {
  let keys: Keys | undefined;
  const link = async (request: FastifyRequest<{ Params: { '*': string } }>) => {
    keys ??= await loadKeys(deps.store.db);
    return readActionLink(keys, request.params['*'], deps.clock.now());
  };
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_r, body, done) =>
    done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );

  app.get(
    '/actions/*',
    {
      config: { swaggerTransform },
      schema: {
        tags: ['inbox'],
        summary: 'The page of an action link: what it does, with a button (changes nothing)',
        params: TokenParams,
        response: { 200: { description: 'An HTML page with a form that POSTs to the same URL', ...Html } },
      },
    },
    async (request, reply) => {
      const found = await link(request);
      if (found === undefined) return refuse(request, reply, new HeraldError('invalid_link'));
      const shown = await describe(deps, found);
      if (shown === undefined) return refuse(request, reply, new HeraldError('invalid_link'));
      const { title, label, confirm, comment } = shown;
      const field =
        comment === undefined
          ? ''
          : `<p><label>Comment${comment === 'required' ? '' : ' (optional)'}<br>
<textarea name="comment" rows="4"${comment === 'required' ? ' required' : ''}></textarea></label></p>`;
      return htmlPage(
        reply,
        200,
        label,
        `<p>${escapeHtml(title)}</p>
<p>${escapeHtml(confirm ?? `${label}?`)}</p>
<form method="post" action="${escapeHtml(request.params['*'])}">
${field}<button type="submit">${escapeHtml(label)}</button>
</form>`,
      );
    },
  );

  app.post(
    '/actions/*',
    {
      config: { swaggerTransform },
      schema: {
        tags: ['inbox'],
        summary: 'Respond through an action link (a form post, or JSON from a push service worker)',
        description:
          'The body is optional: `comment` as `application/x-www-form-urlencoded` or JSON. A browser ' +
          '(Accept: text/html) gets a page; anyone else the response as JSON.',
        params: TokenParams,
        response: {
          200: {
            description: 'The response: a page for a browser (Accept: text/html), JSON for anyone else',
            content: { ...Html.content, 'application/json': { schema: RespondedBody } },
          },
        },
      },
    },
    async (request, reply) => {
      const found = await link(request);
      if (found === undefined) return refuse(request, reply, new HeraldError('invalid_link'));
      const body = request.body as { comment?: unknown } | undefined;
      const comment = typeof body?.comment === 'string' ? body.comment : null;
      let responded: Responded;
      try {
        responded = await respond(deps, {
          userId: found.userId,
          notificationId: found.notificationId,
          action: found.action,
          comment,
          via: 'link',
        });
      } catch (error) {
        if (error instanceof HeraldError) return refuse(request, reply, error);
        throw error;
      }
      if (!wantsHtml(request))
        return reply.type('application/json').send(JSON.stringify(await answer(deps, responded)));
      return htmlPage(
        reply,
        200,
        'Done',
        `<p>Your response <strong>${escapeHtml(found.action)}</strong> was recorded.</p>`,
      );
    },
  );
}

/** What a link's page shows; undefined when its notification or action is gone. */
async function describe(deps: Deps, link: ActionLink) {
  const notification = await findNotification(deps.store.db, link.userId, link.notificationId);
  if (notification === undefined || notification.actionable === 0) return undefined;
  const event = await findEvent(deps.store.db, notification.event_id);
  const action = event && actionsOf(event).find((a) => a.id === link.action);
  if (action === undefined) return undefined;
  return { title: notification.title, label: action.label, confirm: action.confirm, comment: action.comment };
}
