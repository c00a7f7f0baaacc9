import { createHash, createPrivateKey } from 'node:crypto';
import { type ClientHttp2Session, connect, constants, type IncomingHttpHeaders } from 'node:http2';
import type { BlockList } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type CryptoKey, importPKCS8, SignJWT } from 'jose';
import { checkUrl, safeLookup } from '../delivery/ssrf.ts';
import { retryAfter } from '../delivery/webhook.ts';
import {
  ChannelConfigError,
  type Message,
  type Provider,
  type ProviderKind,
  type ProviderOptions,
  result,
  type SendResult,
  type Severity,
  truncate,
} from './channel.ts';

/*
 * Apple Push Notification service, provider API over HTTP/2 with token-based authentication: one long-lived
 * connection per provider, `POST /3/device/<token>` with an ES256 provider token signed by the team's .p8 key.
 */

const DEFAULT_BASE_URL = 'https://api.push.apple.com';
// Apple: refresh the provider token no more than once every 20 minutes and no less than once every 60.
const TOKEN_REUSE_MS = 50 * 60 * 1000;
const COLLAPSE_ID_LIMIT = 64;
const APPLE_ID = /^[A-Z0-9]{10}$/;
const DEVICE_TOKEN = /^(?:[0-9a-fA-F]{2}){32,100}$/;
const GONE = new Set(['BadDeviceToken', 'Unregistered', 'DeviceTokenNotForTopic']);
const TOKEN_REJECTED = new Set(['ExpiredProviderToken', 'InvalidProviderToken']);

/** APNs provider settings, normalised by {@link apnsProvider}.validate. */
export interface ApnsConfig {
  /** The 10-character Apple Team ID (`iss` of the provider token). */
  team_id: string;
  /** The 10-character id of the .p8 signing key (`kid`). */
  key_id: string;
  /** The .p8 key: PEM PKCS#8, EC P-256. */
  private_key: string;
  /** The app's bundle id (`apns-topic`). */
  topic: string;
  /** `https://api.push.apple.com`, or `https://api.sandbox.push.apple.com` for development builds. */
  base_url: string;
}

/**
 * Options for {@link apnsProvider}.create. HTTP/2 sessions do not go through the undici dispatcher, so the
 * SSRF guard is applied here: when `allow` is given (the `allowList(config.outboundAllow)`), the host is checked
 * with `checkUrl` before each connection and connected through `safeLookup`, refusing internal addresses.
 */
export interface ApnsOptions extends ProviderOptions {
  allow?: BlockList;
}

/** The `apns-collapse-id` for a message: its id when it fits in 64 bytes, else a hash of it. */
export function apnsCollapseId(messageId: string): string {
  if (Buffer.byteLength(messageId) <= COLLAPSE_ID_LIMIT) return messageId;
  return createHash('sha256').update(messageId).digest('base64url');
}

/** `apns-priority`: 10 (immediately) for what needs attention, 5 (power-considerate) for the rest. */
export function apnsPriority(severity: Severity): '10' | '5' {
  return severity === 'info' ? '5' : '10';
}

/** Checks that `pem` is an unencrypted PKCS#8 private key of the given type; throws {@link ChannelConfigError}. */
export function checkPrivateKey(pem: string, path: string, type: 'rsa' | 'P-256'): void {
  if (!pem.includes('-----BEGIN PRIVATE KEY-----')) {
    throw new ChannelConfigError(path, 'expected a PEM PKCS#8 private key ("-----BEGIN PRIVATE KEY-----")');
  }
  let details: { type: string | undefined; curve: string | undefined };
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' });
    details = { type: key.asymmetricKeyType, curve: key.asymmetricKeyDetails?.namedCurve };
  } catch (error) {
    throw new ChannelConfigError(path, `the private key cannot be read: ${(error as Error).message}`);
  }
  const ok =
    type === 'rsa' ? details.type === 'rsa' : details.type === 'ec' && details.curve === 'prime256v1';
  if (!ok)
    throw new ChannelConfigError(path, `expected an ${type === 'rsa' ? 'RSA' : 'EC P-256'} private key`);
}

function field(config: Record<string, unknown>, name: string, pattern: RegExp, what: string): string {
  const value = config[name];
  if (typeof value !== 'string' || !pattern.test(value.trim())) {
    throw new ChannelConfigError(`/${name}`, `${name} must be ${what}`);
  }
  return value.trim();
}

function validate(input: unknown): ApnsConfig {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new ChannelConfigError('', 'the APNs configuration must be an object');
  }
  const config = input as Record<string, unknown>;
  const idWhat = '10 capital letters and digits, as shown in the Apple developer account';
  const team_id = field(config, 'team_id', APPLE_ID, `the Team ID: ${idWhat}`);
  const key_id = field(config, 'key_id', APPLE_ID, `the id of the .p8 key: ${idWhat}`);
  const topic = field(config, 'topic', /^[A-Za-z0-9.-]+$/, "the app's bundle id (com.example.app)");
  if (typeof config['private_key'] !== 'string') {
    throw new ChannelConfigError('/private_key', 'private_key must be the content of the .p8 key file');
  }
  const private_key = config['private_key'].trim();
  checkPrivateKey(private_key, '/private_key', 'P-256');
  const base = config['base_url'] ?? DEFAULT_BASE_URL;
  if (typeof base !== 'string' || !/^https?:\/\/[^/?#]+\/?$/.test(base) || !URL.canParse(base)) {
    throw new ChannelConfigError('/base_url', `base_url must be an origin such as ${DEFAULT_BASE_URL}`);
  }
  return { team_id, key_id, private_key, topic, base_url: new URL(base).origin };
}

/** The ES256 provider token, reused for 50 minutes; concurrent sends share one signing. */
function providerTokens(config: ApnsConfig, now: () => number) {
  let key: Promise<CryptoKey> | null = null;
  let cached: { jwt: string; issuedAt: number } | null = null;
  let pending: Promise<string> | null = null;
  const sign = async (): Promise<string> => {
    key ??= importPKCS8(config.private_key, 'ES256');
    const issuedAt = now();
    const jwt = await new SignJWT({})
      .setProtectedHeader({ alg: 'ES256', kid: config.key_id })
      .setIssuer(config.team_id)
      .setIssuedAt(Math.floor(issuedAt / 1000))
      .sign(await key);
    cached = { jwt, issuedAt };
    return jwt;
  };
  return {
    get(): Promise<string> {
      if (cached !== null && now() - cached.issuedAt < TOKEN_REUSE_MS) return Promise.resolve(cached.jwt);
      pending ??= sign().finally(() => {
        pending = null;
      });
      return pending;
    },
    drop(jwt: string): void {
      if (cached?.jwt === jwt) cached = null;
    },
  };
}

/** One HTTP/2 session, opened on first use and again whenever it closes, errs or receives GOAWAY. */
function sessions(origin: string, options: ApnsOptions) {
  let current: ClientHttp2Session | null = null;
  let pending: Promise<ClientHttp2Session> | null = null;
  let closed = false;
  const open = async (): Promise<ClientHttp2Session> => {
    if (options.allow !== undefined) await checkUrl(origin, options.allow);
    const session = connect(origin, options.allow ? { lookup: safeLookup(options.allow) } : {});
    const forget = () => {
      if (current === session) current = null;
    };
    session.on('error', forget).on('close', forget).on('goaway', forget);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.destroy();
        reject(new Error(`timeout: could not connect within ${options.timeoutMs / 1000} s`));
      }, options.timeoutMs);
      session.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      session.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
    });
    if (closed) {
      session.close();
      throw new Error('the provider is closed');
    }
    current = session;
    return session;
  };
  return {
    get(): Promise<ClientHttp2Session> {
      if (current !== null && !current.closed && !current.destroyed) return Promise.resolve(current);
      pending ??= open().finally(() => {
        pending = null;
      });
      return pending;
    },
    /** Stops using `session` for new requests (it keeps serving the ones under way). */
    discard(session: ClientHttp2Session): void {
      if (current === session) current = null;
    },
    async close(): Promise<void> {
      closed = true;
      const session = current ?? (await pending?.catch(() => null)) ?? null;
      current = null;
      if (session !== null && !session.closed) await new Promise<void>((resolve) => session.close(resolve));
    },
  };
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function post(session: ClientHttp2Session, headers: Record<string, string>, body: string, timeoutMs: number) {
  return new Promise<Answer>((resolve, reject) => {
    const stream = session.request({ ':method': 'POST', ...headers });
    const timer = setTimeout(() => {
      stream.close(constants.NGHTTP2_CANCEL);
      reject(new Error(`timeout: no complete response within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    let answer: Omit<Answer, 'body'> = { status: 0, headers: {} };
    const chunks: Buffer[] = [];
    stream.on('response', (h) => {
      answer = { status: Number(h[':status']), headers: h };
    });
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.on('end', () => {
      clearTimeout(timer);
      resolve({ ...answer, body: Buffer.concat(chunks).toString('utf8') });
    });
    stream.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    stream.on('close', () => {
      clearTimeout(timer);
      reject(new Error(`stream closed without an answer (HTTP/2 error ${stream.rstCode})`));
    });
    stream.end(body);
  });
}

function payload(message: Message): string {
  const aps: Record<string, unknown> = {
    alert: { title: message.title, body: message.text },
    'thread-id': message.type,
  };
  if (message.severity === 'critical') aps['sound'] = 'default';
  const body: Record<string, unknown> = { ...message.data, aps, event_id: message.eventId };
  if (message.notificationId !== null) body['notification_id'] = message.notificationId;
  if (message.url !== null) body['url'] = message.url;
  return JSON.stringify(body);
}

function headersFor(
  message: Message,
  config: ApnsConfig,
  jwt: string,
  token: string,
): Record<string, string> {
  const headers: Record<string, string> = {
    ':path': `/3/device/${token}`,
    authorization: `bearer ${jwt}`,
    'apns-topic': config.topic,
    'apns-push-type': 'alert',
    'apns-priority': apnsPriority(message.severity),
    'apns-collapse-id': apnsCollapseId(message.id),
    'content-type': 'application/json',
  };
  // Without apns-expiration APNs stores the notification for a device that is offline; 0 would drop it.
  if (message.expiresAt !== null) headers['apns-expiration'] = String(Math.floor(message.expiresAt / 1000));
  return headers;
}

function reasonOf(body: string): string | null {
  try {
    const reason = (JSON.parse(body) as { reason?: unknown }).reason;
    return typeof reason === 'string' ? reason : null;
  } catch {
    return null;
  }
}

function classify(answer: Answer, latencyMs: number, now: number): SendResult {
  const base = { statusCode: answer.status, latencyMs, response: truncate(answer.body) };
  const { status } = answer;
  if (status === 200) {
    const id = answer.headers['apns-id'];
    return result({ ...base, outcome: 'succeeded', providerMessageId: typeof id === 'string' ? id : null });
  }
  const reason = reasonOf(answer.body) ?? `HTTP ${status}`;
  const fields = { ...base, error: reason };
  if (GONE.has(reason) || status === 410) return result({ ...fields, outcome: 'failed', addressGone: true });
  if (status === 429) {
    const wait = retryAfter(answer.headers['retry-after'], now);
    // Too many requests for one device is the message's problem; too many token updates is ours.
    const providerFault = reason === 'TooManyProviderTokenUpdates';
    return result({ ...fields, outcome: 'retry', retryAfterMs: wait, providerFault });
  }
  if (status === 403 || status >= 500) {
    const wait = retryAfter(answer.headers['retry-after'], now);
    return result({ ...fields, outcome: 'retry', providerFault: true, retryAfterMs: wait });
  }
  return result({ ...fields, outcome: 'failed' });
}

// A stream the peer refused (RFC 9113 §8.7: REFUSED_STREAM, as after GOAWAY) or a session that was already
// going away when the request was made was not processed: it is safe to send again on a new connection.
function unprocessed(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  if (code === 'ERR_HTTP2_INVALID_SESSION' || code === 'ERR_HTTP2_GOAWAY_SESSION') return true;
  return code === 'ERR_HTTP2_STREAM_ERROR' && /REFUSED_STREAM/.test((error as Error).message);
}

function describe(error: unknown): string {
  const e = error as Error & { code?: unknown; cause?: unknown };
  if (e.name === 'HeraldError' || e.name === 'UnsafeAddressError') return `refused: ${e.message}`;
  const code = typeof e.code === 'string' ? `${e.code}: ` : '';
  return `${code}${e.message || String(error)}`.slice(0, 500);
}

function create(config: ApnsConfig, options: ApnsOptions): Provider<string> {
  const tokens = providerTokens(config, options.now);
  const pool = sessions(config.base_url, options);
  return {
    async send(message: Message, token: string): Promise<SendResult> {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      if (!DEVICE_TOKEN.test(token)) {
        const error = 'BadDeviceToken: not a hexadecimal APNs device token';
        return result({ outcome: 'failed', latencyMs: 0, error, addressGone: true });
      }
      try {
        const jwt = await tokens.get();
        const headers = headersFor(message, config, jwt, token);
        const body = payload(message);
        let session = await pool.get();
        const answer = await post(session, headers, body, options.timeoutMs).catch(async (error: unknown) => {
          if (!unprocessed(error)) throw error;
          pool.discard(session);
          session = await pool.get();
          return post(session, headers, body, options.timeoutMs);
        });
        const sent = classify(answer, elapsed(), options.now());
        if (answer.status === 403 && TOKEN_REJECTED.has(sent.error ?? '')) tokens.drop(jwt);
        return sent;
      } catch (error) {
        return result({
          outcome: 'retry',
          latencyMs: elapsed(),
          error: describe(error),
          providerFault: true,
        });
      }
    },
    close: () => pool.close(),
  };
}

/** APNs over HTTP/2 with token-based authentication; the address is the device token in hex. */
export const apnsProvider: ProviderKind<ApnsConfig, string> = {
  kind: 'apns',
  channel: 'push',
  validate,
  redact: (config) => ({ ...config, private_key: '********' }),
  create,
};
