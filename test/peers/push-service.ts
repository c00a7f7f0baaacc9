import { createECDH, createPublicKey, type ECDH, randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { type JWTPayload, jwtVerify } from 'jose';
import type { PushSubscription } from '../../src/channels/webpush.ts';

/*
 * A browser push service (RFC 8030) on 127.0.0.1: it holds each subscription's private key and auth secret as
 * the browser would, checks the headers and the VAPID JWT (RFC 8292) as a real service does, decrypts the body
 * (RFC 8291, aes128gcm) and records what the service worker would receive. Error bodies follow Mozilla
 * autopush: `{ code, error, message }`.
 */

interface Ece {
  decrypt(buffer: Buffer, params: { version: 'aes128gcm'; privateKey: ECDH; authSecret: string }): Buffer;
}
const ece = createRequire(import.meta.url)('http_ece') as Ece;

const URGENCIES = new Set(['very-low', 'low', 'normal', 'high']);
const MAX_BODY = 4096;
const MAX_JWT_LIFETIME_S = 24 * 3600;

/** A subscription as the browser hands it to the application, with the peer's id for it. */
export interface PeerSubscription extends PushSubscription {
  id: string;
}

/** One accepted push message, as the service worker would see it. */
export interface ReceivedPush {
  subscriptionId: string;
  headers: IncomingHttpHeaders;
  /** The `Topic` header: a later message with the same topic replaces this one while it is undelivered. */
  topic: string | null;
  payload: unknown;
  jwtClaims: JWTPayload;
}

export interface PushService {
  /** `http://127.0.0.1:<port>`: the `aud` a VAPID JWT must carry. */
  origin: string;
  /** A new subscription; with `applicationServerKey`, only that VAPID key may push to it (403 otherwise). */
  subscribe(options?: { applicationServerKey?: string }): PeerSubscription;
  /** From now on, pushes to the subscription are answered `status` (410 Gone or 404 Not Found). */
  expire(subscriptionId: string, status?: 404 | 410): void;
  /** Answers the next push request with this, whatever it holds. */
  replyNext(status: number, headers?: Record<string, string>, body?: string): void;
  /** Every accepted message, in order. */
  readonly messages: ReceivedPush[];
  waitForMessages(n: number): Promise<ReceivedPush[]>;
  /** What the device would get if it came online now: each topic only by its latest message. */
  outstanding(subscriptionId: string): ReceivedPush[];
}

interface Held {
  ecdh: ECDH;
  auth: string;
  applicationServerKey: string | null;
  expired: 404 | 410 | null;
}

class Refusal extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(',') : value;
}

function checkHeaders(headers: IncomingHttpHeaders): void {
  const ttl = single(headers['ttl']);
  if (ttl === undefined) throw new Refusal(400, 'Missing TTL header');
  if (!/^\d+$/.test(ttl)) throw new Refusal(400, 'Invalid TTL header');
  const urgency = single(headers['urgency']);
  if (urgency !== undefined && !URGENCIES.has(urgency)) throw new Refusal(400, 'Invalid Urgency header');
  const topic = single(headers['topic']);
  if (topic !== undefined && !/^[A-Za-z0-9_-]{1,32}$/.test(topic))
    throw new Refusal(400, 'Invalid Topic header');
  if (headers['content-encoding'] !== 'aes128gcm') throw new Refusal(400, 'Unsupported Content-Encoding');
}

async function verifyVapid(
  authorization: string | undefined,
  origin: string,
  held: Held,
): Promise<JWTPayload> {
  if (authorization === undefined) throw new Refusal(401, 'Missing Authorization header');
  const match = /^vapid\s+t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/i.exec(authorization.trim());
  if (match === null) throw new Refusal(401, 'Authorization is not a vapid t=..., k=... value');
  const [, token, k] = match as unknown as [string, string, string];
  if (held.applicationServerKey !== null && k !== held.applicationServerKey) {
    throw new Refusal(403, 'VAPID key does not match the subscription applicationServerKey');
  }
  const point = Buffer.from(k, 'base64url');
  let claims: JWTPayload;
  try {
    if (point.length !== 65 || point[0] !== 0x04) throw new Error('k is not an uncompressed P-256 point');
    const x = point.subarray(1, 33).toString('base64url');
    const y = point.subarray(33).toString('base64url');
    const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
    ({ payload: claims } = await jwtVerify(token, key, {
      algorithms: ['ES256'],
      audience: origin,
      requiredClaims: ['aud', 'exp', 'sub'],
    }));
  } catch (error) {
    throw new Refusal(403, `Invalid VAPID token: ${(error as Error).message}`);
  }
  if (claims.exp! > Date.now() / 1000 + MAX_JWT_LIFETIME_S) {
    throw new Refusal(403, 'VAPID token expires more than 24 hours ahead');
  }
  if (typeof claims.sub !== 'string' || !/^(mailto|https):/.test(claims.sub)) {
    throw new Refusal(403, 'VAPID sub must be a mailto: or https: URL');
  }
  return claims;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function answer(
  res: ServerResponse,
  status: number,
  message: string,
  headers: Record<string, string> = {},
): void {
  const body = JSON.stringify({ code: status, error: STATUS_CODES[status] ?? 'Error', message });
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(body);
}

/** Starts the push service; it is closed after the test. */
export async function startPushService(t: TestContext): Promise<PushService> {
  const subscriptions = new Map<string, Held>();
  const messages: ReceivedPush[] = [];
  const scripted: { status: number; headers: Record<string, string>; body: string }[] = [];
  const waiters: { n: number; resolve: (all: ReceivedPush[]) => void }[] = [];
  let origin = '';

  async function accept(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const body = await readBody(req);
    const next = scripted.shift();
    if (next !== undefined) {
      res.writeHead(next.status, next.headers).end(next.body);
      return;
    }
    const held = subscriptions.get(id);
    if (held === undefined) throw new Refusal(404, 'Request did not validate invalid token');
    if (held.expired !== null) throw new Refusal(held.expired, 'Subscription expired');
    checkHeaders(req.headers);
    const jwtClaims = await verifyVapid(single(req.headers.authorization), origin, held);
    if (body.length > MAX_BODY) throw new Refusal(413, 'Data payload too large');
    let payload: unknown;
    try {
      const plaintext = ece.decrypt(body, {
        version: 'aes128gcm',
        privateKey: held.ecdh,
        authSecret: held.auth,
      });
      payload = JSON.parse(plaintext.toString('utf8'));
    } catch (error) {
      throw new Refusal(400, `Payload cannot be decrypted: ${(error as Error).message}`);
    }
    const topic = single(req.headers['topic']) ?? null;
    messages.push({ subscriptionId: id, headers: req.headers, topic, payload, jwtClaims });
    for (const waiter of waiters.filter((w) => messages.length >= w.n)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(messages.slice());
    }
    res
      .writeHead(201, { location: `${origin}/m/${randomUUID()}`, ttl: single(req.headers['ttl']) ?? '0' })
      .end();
  }

  const server = createServer((req, res) => {
    const match = /^\/push\/([A-Za-z0-9_-]+)$/.exec(req.url ?? '');
    if (req.method !== 'POST' || match === null) {
      answer(res, 404, 'No such route');
      return;
    }
    accept(req, res, match[1]!).catch((error: unknown) => {
      if (error instanceof Refusal) answer(res, error.status, error.message);
      else answer(res, 500, String(error));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  t.after(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close');
  });

  return {
    origin,
    subscribe(options = {}) {
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      const id = randomBytes(12).toString('base64url');
      const auth = randomBytes(16).toString('base64url');
      subscriptions.set(id, {
        ecdh,
        auth,
        applicationServerKey: options.applicationServerKey ?? null,
        expired: null,
      });
      return { id, endpoint: `${origin}/push/${id}`, keys: { p256dh: ecdh.getPublicKey('base64url'), auth } };
    },
    expire(subscriptionId, status = 410) {
      const held = subscriptions.get(subscriptionId);
      if (held === undefined) throw new Error(`no subscription ${subscriptionId}`);
      held.expired = status;
    },
    replyNext(status, headers = {}, body = '') {
      scripted.push({ status, headers, body });
    },
    messages,
    waitForMessages(n) {
      if (messages.length >= n) return Promise.resolve(messages.slice());
      return new Promise((resolve) => waiters.push({ n, resolve }));
    },
    outstanding(subscriptionId) {
      const kept: ReceivedPush[] = [];
      for (const message of messages.filter((m) => m.subscriptionId === subscriptionId)) {
        const replaced = kept.findIndex((k) => message.topic !== null && k.topic === message.topic);
        if (replaced >= 0) kept.splice(replaced, 1);
        kept.push(message);
      }
      return kept;
    },
  };
}
