import { createHmac, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { App, Deps } from '../deps.ts';
import { findUsersByEmails } from '../directory/users.repo.ts';
import { HeraldError, invalid } from '../errors.ts';
import { signedFormsOnly } from '../http/forms.ts';
import { respond } from './respond.ts';

// Slack signs `v0:{timestamp}:{raw body}` and asks receivers to refuse requests older than five minutes.
const MAX_SKEW_SECONDS = 5 * 60;

/**
 * Slack interactive buttons (`block_actions`): the request signature (`X-Slack-Signature`, HMAC-SHA256 under
 * the app's signing secret) is checked over the raw body, the button's `action_id` `herald:<action>:<ref>`
 * names the action and the notification (or, for a channel message, the event), and the Slack user is the
 * Herald user with the same email address.
 */
export async function slackRoutes(app: App, deps: Deps): Promise<void> {
  // The signature covers the form as sent: it is parsed only once verified.
  signedFormsOnly(app, 'Slack');

  app.post(
    '/integrations/slack/interactions',
    {
      schema: {
        tags: ['inbox'],
        summary: 'Slack interactivity: a button of a Herald message was pressed',
        description:
          'Signed by Slack (`X-Slack-Signature`, `X-Slack-Request-Timestamp`, secret ' +
          '`HERALD_SLACK_SIGNING_SECRET`); unsigned, wrongly signed or stale requests get 401.',
        consumes: ['application/x-www-form-urlencoded'],
        body: Type.String({ description: 'Slack sends `payload=<JSON>` as a form' }),
        response: { 200: Type.Object({ ok: Type.Boolean(), text: Type.String() }) },
      },
    },
    async (request) => {
      verify(deps, request);
      const payload = parsePayload(request.body as string);
      const pressed = payload.actions?.[0]?.action_id ?? '';
      const match = /^herald:([A-Za-z0-9_-]+):(.+)$/.exec(pressed);
      if (payload.type !== 'block_actions' || match === null) {
        throw invalid('payload.actions', 'must be a Herald button (action_id herald:<action>:<id>)');
      }
      const email = payload.user?.email;
      if (typeof email !== 'string' || email === '') {
        throw invalid('payload.user.email', 'is needed to know which Herald user pressed the button');
      }
      const [user] = await findUsersByEmails(deps.store.db, [email]);
      if (user === undefined) throw invalid('payload.user.email', 'belongs to no Herald user');
      const [, action, ref] = match;
      const notificationId = await notificationOf(deps, ref!, user.id);
      const responded = await respond(deps, {
        userId: user.id,
        notificationId,
        action: action!,
        comment: null,
        via: 'slack',
      });
      return { ok: true, text: `${responded.response.action} recorded for ${user.name}` };
    },
  );
}

/** Refuses (401) a request without a valid, fresh Slack signature. */
function verify(deps: Deps, request: FastifyRequest): void {
  const secret = deps.config.slackSigningSecret;
  const timestamp = header(request, 'x-slack-request-timestamp');
  const signature = header(request, 'x-slack-signature');
  const body = typeof request.body === 'string' ? request.body : '';
  if (
    secret === undefined ||
    timestamp === undefined ||
    signature === undefined ||
    !/^\d+$/.test(timestamp)
  ) {
    throw new HeraldError('unauthorized', 'The request is not signed by Slack');
  }
  if (Math.abs(deps.clock.now() / 1000 - Number(timestamp)) > MAX_SKEW_SECONDS) {
    throw new HeraldError('unauthorized', 'The Slack request timestamp is more than five minutes off');
  }
  const expected = Buffer.from(
    `v0=${createHmac('sha256', secret).update(`v0:${timestamp}:${body}`).digest('hex')}`,
  );
  const given = Buffer.from(signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new HeraldError('unauthorized', 'The Slack signature does not match');
  }
}

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

interface SlackPayload {
  type?: string;
  user?: { id?: string; email?: string };
  actions?: { action_id?: string }[];
}

function parsePayload(body: string): SlackPayload {
  const text = new URLSearchParams(body).get('payload');
  try {
    const value: unknown = text === null ? null : JSON.parse(text);
    if (value !== null && typeof value === 'object') return value as SlackPayload;
  } catch {
    // answered below
  }
  throw invalid('payload', 'must be the JSON Slack sends');
}

/** A button names a notification, or (on a message to a channel) the event: then the user's notification of it. */
async function notificationOf(deps: Deps, ref: string, userId: string): Promise<string> {
  if (!ref.startsWith('evt_')) return ref;
  const row = await deps.store.db
    .selectFrom('notifications')
    .select('id')
    .where('event_id', '=', ref)
    .where('user_id', '=', userId)
    .executeTakeFirst();
  return row?.id ?? ref;
}
