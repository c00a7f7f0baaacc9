import { randomUUID } from 'node:crypto';
import {
  createServer,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';

/*
 * A local stand-in for the APNs provider API: HTTP/2 without TLS (h2c) on 127.0.0.1. It makes its own .p8 key,
 * verifies the provider token (ES256, kid, iss, iat at most an hour old) and checks the request the way APNs
 * does, answering with APNs' status codes and `{"reason": ...}` bodies.
 */

const PUSH_TYPES = [
  'alert',
  'background',
  'location',
  'voip',
  'complication',
  'fileprovider',
  'mdm',
  'liveactivity',
];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A notification APNs accepted. */
export interface ApnsReceived {
  token: string;
  headers: IncomingHttpHeaders;
  payload: Record<string, any>;
}

export interface ApnsPeer {
  /** `http://127.0.0.1:<port>`: the provider's `base_url`. */
  readonly url: string;
  readonly teamId: string;
  readonly keyId: string;
  /** The .p8 key (PEM PKCS#8, EC P-256). */
  readonly privateKeyPem: string;
  /** The bundle id every request must name in `apns-topic`. */
  readonly topic: string;
  readonly received: ApnsReceived[];
  /** HTTP/2 connections opened so far. */
  readonly sessions: number;
  /** Later notifications to `token` get 410 Unregistered. */
  unregister(token: string): void;
  /** The next request (with a valid provider token) gets this answer. */
  replyNext(status: number, reason: string): void;
  /** Sends GOAWAY on every open connection, as APNs does when it closes an idle or old one. */
  goaway(): void;
  /** Resolves once `count` notifications were accepted. */
  waitForReceived(count: number): Promise<ApnsReceived[]>;
  close(): Promise<void>;
}

function id(): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
  return Array.from({ length: 10 }, () => alphabet[Math.floor(Math.random() * alphabet.length)]).join('');
}

/** Starts the stand-in, closed when the test ends. */
export async function startApnsPeer(t: TestContext): Promise<ApnsPeer> {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  const teamId = id();
  const keyId = id();
  const topic = 'com.example.herald';
  const gone = new Map<string, number>();
  const queued: { status: number; reason: string }[] = [];
  const received: ApnsReceived[] = [];
  const waiters: { count: number; resolve: (r: ApnsReceived[]) => void }[] = [];
  const open = new Set<ServerHttp2Session>();
  let sessions = 0;

  const answer = (
    stream: ServerHttp2Stream,
    status: number,
    body?: object,
    headers: OutgoingHttpHeaders = {},
  ) => {
    if (stream.destroyed) return;
    stream.respond({
      ':status': status,
      ...headers,
      ...(body ? { 'content-type': 'application/json' } : {}),
    });
    stream.end(body ? JSON.stringify(body) : undefined);
  };

  // The reason APNs would refuse the provider token for, or null when it is good.
  const tokenProblem = async (authorization: string | undefined): Promise<string | null> => {
    const jwt = /^bearer (.+)$/.exec(authorization ?? '')?.[1];
    if (jwt === undefined) return 'MissingProviderToken';
    try {
      if (decodeProtectedHeader(jwt).kid !== keyId) return 'InvalidProviderToken';
      const { payload } = await jwtVerify(jwt, publicKey, {
        algorithms: ['ES256'],
        issuer: teamId,
        requiredClaims: ['iat'],
      });
      return Date.now() / 1000 - payload.iat! > 3600 ? 'ExpiredProviderToken' : null;
    } catch {
      return 'InvalidProviderToken';
    }
  };

  // The reason APNs would refuse the request's headers or payload for, with its status.
  const requestProblem = (headers: IncomingHttpHeaders, body: Buffer): [number, string] | null => {
    const header = (name: string) => headers[name] as string | undefined;
    if (header('apns-topic') === undefined) return [400, 'MissingTopic'];
    if (header('apns-topic') !== topic) return [400, 'BadTopic'];
    if (!/^\/3\/device\/[0-9a-f]{64}$/i.test(header(':path') ?? '')) return [400, 'BadDeviceToken'];
    const pushType = header('apns-push-type');
    if (pushType !== undefined && !PUSH_TYPES.includes(pushType)) return [400, 'InvalidPushType'];
    const priority = header('apns-priority');
    if (priority !== undefined && !['10', '5', '1'].includes(priority)) return [400, 'BadPriority'];
    if (Buffer.byteLength(header('apns-collapse-id') ?? '') > 64) return [400, 'BadCollapseId'];
    const expiration = header('apns-expiration');
    if (expiration !== undefined && !/^\d+$/.test(expiration)) return [400, 'BadExpirationDate'];
    const apnsId = header('apns-id');
    if (apnsId !== undefined && !UUID.test(apnsId)) return [400, 'BadMessageId'];
    if (body.length === 0) return [400, 'PayloadEmpty'];
    if (body.length > 4096) return [413, 'PayloadTooLarge'];
    return null;
  };

  const handle = async (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, body: Buffer) => {
    if (headers[':method'] !== 'POST') return answer(stream, 405, { reason: 'MethodNotAllowed' });
    if (!String(headers[':path']).startsWith('/3/device/')) return answer(stream, 404, { reason: 'BadPath' });
    const refused = await tokenProblem(headers.authorization);
    if (refused !== null) return answer(stream, 403, { reason: refused });
    const next = queued.shift();
    if (next) return answer(stream, next.status, { reason: next.reason });
    const problem = requestProblem(headers, body);
    if (problem !== null) return answer(stream, problem[0], { reason: problem[1] });
    let payload: Record<string, any>;
    try {
      payload = JSON.parse(body.toString('utf8'));
      if (typeof payload['aps'] !== 'object') return answer(stream, 400, { reason: 'PayloadEmpty' });
    } catch {
      return answer(stream, 400, { reason: 'BadPayload' });
    }
    const token = String(headers[':path']).slice('/3/device/'.length);
    const since = gone.get(token);
    if (since !== undefined) return answer(stream, 410, { reason: 'Unregistered', timestamp: since });
    received.push({ token, headers, payload });
    for (const waiter of waiters.filter((w) => received.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve([...received]);
    }
    answer(stream, 200, undefined, { 'apns-id': (headers['apns-id'] as string | undefined) ?? randomUUID() });
  };

  const server = createServer();
  server.on('session', (session) => {
    sessions++;
    open.add(session);
    session.on('close', () => open.delete(session));
    session.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => void handle(stream, headers, Buffer.concat(chunks)));
    stream.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const session of open) session.destroy();
    });
  t.after(close);

  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    teamId,
    keyId,
    privateKeyPem: await exportPKCS8(privateKey),
    topic,
    received,
    get sessions() {
      return sessions;
    },
    unregister: (token) => gone.set(token, Date.now()),
    replyNext: (status, reason) => queued.push({ status, reason }),
    goaway: () => {
      for (const session of open) session.close();
    },
    waitForReceived: (count) =>
      received.length >= count
        ? Promise.resolve([...received])
        : new Promise((resolve) => waiters.push({ count, resolve })),
    close,
  };
}
