import type { Keys } from '../settings/keys.ts';
import { signToken, verifyToken } from '../settings/keys.ts';

/** How long an action link in an email or a push message works. */
export const LINK_TTL_MS = 7 * 24 * 3600 * 1000;

/** What an action link lets its holder do: respond with `action` to one notification, as its recipient. */
export interface ActionLink {
  notificationId: string;
  userId: string;
  action: string;
  expiresAt: number;
}

/** The URL of a signed action link (`GET` shows a confirmation page, `POST` responds). */
export function actionLinkUrl(publicUrl: string, keys: Keys, link: ActionLink): string {
  const token = signToken(keys.linkSecret, {
    k: 'act',
    n: link.notificationId,
    u: link.userId,
    a: link.action,
    x: link.expiresAt,
  });
  return `${publicUrl}/v1/actions/${token}`;
}

/** The link a token stands for, or undefined when it was altered, is not an action link, or has expired. */
export function readActionLink(keys: Keys, token: string, now: number): ActionLink | undefined {
  const payload = verifyToken(keys.linkSecret, token);
  if (payload === undefined) return undefined;
  const { k, n, u, a, x } = payload;
  if (k !== 'act' || typeof n !== 'string' || typeof u !== 'string' || typeof a !== 'string')
    return undefined;
  if (typeof x !== 'number' || x <= now) return undefined;
  return { notificationId: n, userId: u, action: a, expiresAt: x };
}
