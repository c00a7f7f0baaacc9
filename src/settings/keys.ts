import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { generateVapidKeys } from '../channels/webpush.ts';
import type { Db } from '../db/engine.ts';
import { getOrCreateSetting } from './settings.repo.ts';

/** Keys Herald creates for itself on first use and keeps in the database, so every node shares them. */
export interface Keys {
  /** Signs links Herald hands out (one-click unsubscribe, later action links). */
  readonly linkSecret: Buffer;
  /** The VAPID key pair web push is sent with (URL-safe base64, as browsers expect the public key). */
  readonly vapid: { readonly public_key: string; readonly private_key: string };
}

export async function loadKeys(db: Db): Promise<Keys> {
  const linkSecret = await getOrCreateSetting(db, 'link_secret', () => randomBytes(32).toString('base64'));
  const vapid = await getOrCreateSetting(db, 'vapid_keys', () => JSON.stringify(generateVapidKeys()));
  return Object.freeze({
    linkSecret: Buffer.from(linkSecret, 'base64'),
    vapid: Object.freeze(JSON.parse(vapid) as Keys['vapid']),
  });
}

/** A tamper-proof token carrying `payload`: base64url JSON, a dot, and its HMAC-SHA256. */
export function signToken(secret: Buffer, payload: Record<string, unknown>): string {
  const body = Buffer.from(JSON.stringify(payload)).toString('base64url');
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** The payload of a token made by {@link signToken}, or undefined when it was altered or is malformed. */
export function verifyToken(secret: Buffer, token: string): Record<string, unknown> | undefined {
  const [body, mac, extra] = token.split('.');
  if (body === undefined || mac === undefined || extra !== undefined) return undefined;
  const expected = createHmac('sha256', secret).update(body).digest();
  const given = Buffer.from(mac, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
    return payload !== null && typeof payload === 'object' ? (payload as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
