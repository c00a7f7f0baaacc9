import { createECDH, createHash, createPublicKey } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import webpush from 'web-push';
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
import { noAnswer, post } from './http.ts';

/*
 * Web Push: the payload is encrypted for the browser (RFC 8291, aes128gcm) and POSTed to the push service
 * named by the subscription's endpoint (RFC 8030), signed with Herald's VAPID key (RFC 8292). `web-push` builds
 * the request; it is sent here through the SSRF-guarded agent, since `sendNotification` always uses node:https.
 */

/** A provider's VAPID identity; Herald generates the key pair ({@link generateVapidKeys}) and keeps it. */
export interface WebPushConfig {
  /** `mailto:` or `https:` contact for the push service operators (RFC 8292 `sub`). */
  subject: string;
  /** Uncompressed P-256 point, base64url (65 bytes); browsers pass it as `applicationServerKey`. */
  public_key: string;
  /** P-256 private scalar, base64url (32 bytes). */
  private_key: string;
}

/** A browser's `PushSubscription.toJSON()`, without `expirationTime`: the address of web push. */
export interface PushSubscription {
  endpoint: string;
  keys: { p256dh: string; auth: string };
}

/**
 * What the service worker's `push` event receives (`event.data.json()`). `body` is plain text; `url` opens the
 * record; `actions` map to `showNotification({ actions })`; `data` is the message's free key/values.
 */
export interface WebPushPayload {
  id: string;
  notification_id: string | null;
  event_id: string;
  title: string;
  body: string;
  url: string | null;
  severity: Severity;
  actions: { action: string; title: string }[];
  data: Record<string, string>;
}

// RFC 8291 §4: a 4096-byte body minus the aes128gcm header (86), tag (16) and padding delimiter (1).
const MAX_PLAINTEXT_BYTES = 3993;
const HOUR = 3600;
// How long the push service keeps a message for an offline device when it has no expiry of its own.
const TTL_BY_SEVERITY: Record<Severity, number> = {
  critical: 24 * HOUR,
  error: 24 * HOUR,
  warning: 12 * HOUR,
  info: 4 * HOUR,
};
const MAX_TTL = 28 * 24 * HOUR;
const URGENCY: Record<Severity, 'high' | 'normal' | 'low'> = {
  critical: 'high',
  error: 'high',
  warning: 'normal',
  info: 'low',
};

/** A new VAPID key pair, base64url: store both, publish `public_key` to browsers. */
export function generateVapidKeys(): { public_key: string; private_key: string } {
  const keys = webpush.generateVAPIDKeys();
  return { public_key: keys.publicKey, private_key: keys.privateKey };
}

function decodeKey(value: unknown, path: string, what: string): Buffer {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]+=*$/.test(value.trim())) {
    throw new ChannelConfigError(path, `${what} must be a URL-safe base64 string`);
  }
  return Buffer.from(value.trim(), 'base64url');
}

function isP256Point(bytes: Buffer): boolean {
  if (bytes.length !== 65 || bytes[0] !== 0x04) return false;
  try {
    const x = bytes.subarray(1, 33).toString('base64url');
    const y = bytes.subarray(33).toString('base64url');
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x, y }, format: 'jwk' });
    return true;
  } catch {
    return false;
  }
}

function publicKeyOf(privateKey: Buffer): Buffer | null {
  try {
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(privateKey);
    return ecdh.getPublicKey();
  } catch {
    return null;
  }
}

function validateSubject(value: unknown): string {
  const subject = typeof value === 'string' ? value.trim() : '';
  let url: URL | null = null;
  try {
    url = new URL(subject);
  } catch {}
  if (url?.protocol === 'mailto:' && /^[^@\s]+@[^@\s]+$/.test(url.pathname)) return subject;
  if (url?.protocol === 'https:') {
    // Apple's push service refuses a localhost subject (BadJwtToken).
    if (url.hostname === 'localhost')
      throw new ChannelConfigError('/subject', 'subject must not be localhost');
    return subject;
  }
  throw new ChannelConfigError(
    '/subject',
    'subject must be a mailto: address or an https: URL where push services can reach the operator',
  );
}

function validateConfig(config: unknown): WebPushConfig {
  if (typeof config !== 'object' || config === null) {
    throw new ChannelConfigError('', 'the configuration must be an object');
  }
  const fields = config as Record<string, unknown>;
  const subject = validateSubject(fields['subject']);
  const publicKey = decodeKey(fields['public_key'], '/public_key', 'public_key');
  if (!isP256Point(publicKey)) {
    throw new ChannelConfigError('/public_key', 'public_key must be an uncompressed P-256 point (65 bytes)');
  }
  const privateKey = decodeKey(fields['private_key'], '/private_key', 'private_key');
  if (privateKey.length !== 32) {
    throw new ChannelConfigError('/private_key', 'private_key must be a P-256 private key (32 bytes)');
  }
  if (!publicKeyOf(privateKey)?.equals(publicKey)) {
    throw new ChannelConfigError('/private_key', 'private_key does not belong to public_key');
  }
  return {
    subject,
    public_key: publicKey.toString('base64url'),
    private_key: privateKey.toString('base64url'),
  };
}

/**
 * Checks a subscription as a browser registers it (`PushSubscription.toJSON()`) and returns it normalised;
 * throws {@link ChannelConfigError} (`/endpoint`, `/keys/p256dh`, `/keys/auth`).
 */
export function validateSubscription(value: unknown): PushSubscription {
  const fields = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const endpoint = typeof fields['endpoint'] === 'string' ? fields['endpoint'] : '';
  let url: URL | null = null;
  try {
    url = new URL(endpoint);
  } catch {}
  if (url === null || (url.protocol !== 'https:' && url.protocol !== 'http:') || endpoint.length > 2048) {
    throw new ChannelConfigError('/endpoint', 'endpoint must be the http(s) URL of the push service');
  }
  const keys = (
    typeof fields['keys'] === 'object' && fields['keys'] !== null ? fields['keys'] : {}
  ) as Record<string, unknown>;
  const p256dh = decodeKey(keys['p256dh'], '/keys/p256dh', 'keys.p256dh');
  if (!isP256Point(p256dh)) {
    throw new ChannelConfigError(
      '/keys/p256dh',
      'keys.p256dh must be an uncompressed P-256 point (65 bytes)',
    );
  }
  const auth = decodeKey(keys['auth'], '/keys/auth', 'keys.auth');
  if (auth.length < 16) throw new ChannelConfigError('/keys/auth', 'keys.auth must be at least 16 bytes');
  return { endpoint, keys: { p256dh: p256dh.toString('base64url'), auth: auth.toString('base64url') } };
}

/** The JSON the service worker receives; `body` is shortened to fit, null when even that does not fit. */
function payloadFor(message: Message): string | null {
  const payload: WebPushPayload = {
    id: message.id,
    notification_id: message.notificationId,
    event_id: message.eventId,
    title: message.title,
    body: message.text,
    url: message.url,
    severity: message.severity,
    actions: message.actions.map((a) => ({ action: a.id, title: a.label })),
    data: message.data,
  };
  const withBody = (body: string) => JSON.stringify({ ...payload, body });
  const full = withBody(payload.body);
  if (Buffer.byteLength(full) <= MAX_PLAINTEXT_BYTES) return full;
  const chars = Array.from(payload.body);
  const fits = (n: number) =>
    Buffer.byteLength(withBody(`${chars.slice(0, n).join('')}…`)) <= MAX_PLAINTEXT_BYTES;
  if (!fits(0)) return null;
  let low = 0;
  let high = chars.length;
  while (low < high) {
    const mid = Math.ceil((low + high) / 2);
    if (fits(mid)) low = mid;
    else high = mid - 1;
  }
  return withBody(`${chars.slice(0, low).join('')}…`);
}

function ttlFor(message: Message, now: number): number {
  if (message.expiresAt !== null)
    return Math.min(Math.max(Math.ceil((message.expiresAt - now) / 1000), 0), MAX_TTL);
  return TTL_BY_SEVERITY[message.severity];
}

/** RFC 8030 §5.4: at most 32 URL-safe base64 characters; the same message id always gives the same topic. */
function topicFor(messageId: string): string {
  return createHash('sha256').update(messageId).digest('base64url').slice(0, 32);
}

/** The push service's reason: autopush answers `{code, errno, error, message}`, others plain text. */
function reasonOf(text: string): string {
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const reason = body['message'] ?? body['reason'] ?? body['error'];
    if (typeof reason === 'string' && reason !== '') return reason.slice(0, 200);
  } catch {}
  return text.trim().slice(0, 200);
}

function header(value: string | string[] | undefined): string | null {
  const text = Array.isArray(value) ? value[0] : value;
  return text === undefined || text === '' ? null : text;
}

function classify(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  latencyMs: number,
  now: number,
): SendResult {
  const base = { statusCode: status, latencyMs, response: truncate(text) };
  const reason = reasonOf(text);
  const because = (what: string) =>
    reason === '' ? `${what} (${status})` : `${what} (${status}): ${reason}`;
  if (status >= 200 && status < 300) {
    return result({ ...base, outcome: 'succeeded', providerMessageId: header(headers['location']) });
  }
  if (status === 404 || status === 410) {
    return result({ ...base, outcome: 'failed', addressGone: true, error: because('subscription expired') });
  }
  if (status === 413) return result({ ...base, outcome: 'failed', error: because('payload too large') });
  if (status === 429) {
    const retryAfterMs = retryAfter(headers['retry-after'], now);
    return result({ ...base, outcome: 'retry', retryAfterMs, error: because('rate limited') });
  }
  if (status === 401 || status === 403) {
    return result({ ...base, outcome: 'failed', providerFault: true, error: because('VAPID rejected') });
  }
  if (status >= 500) {
    const retryAfterMs = retryAfter(headers['retry-after'], now);
    return result({
      ...base,
      outcome: 'retry',
      providerFault: true,
      retryAfterMs,
      error: because('push service error'),
    });
  }
  if (status >= 300 && status < 400)
    return result({ ...base, outcome: 'failed', error: because('redirect not followed') });
  return result({ ...base, outcome: 'failed', error: because('rejected') });
}

function networkFailure(error: unknown, timeoutMs: number, latencyMs: number): SendResult {
  const reason = noAnswer(error, timeoutMs);
  // A refused address does not become reachable by retrying; only the allow list can change that.
  if (reason.startsWith('refused:')) return result({ outcome: 'failed', latencyMs, error: reason });
  return result({ outcome: 'retry', latencyMs, providerFault: true, error: reason });
}

async function send(
  config: WebPushConfig,
  options: ProviderOptions,
  message: Message,
  address: PushSubscription,
): Promise<SendResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  let subscription: PushSubscription;
  try {
    subscription = validateSubscription(address);
  } catch (error) {
    return result({
      outcome: 'failed',
      latencyMs: 0,
      addressGone: true,
      error: `bad subscription: ${(error as Error).message}`,
    });
  }
  const payload = payloadFor(message);
  if (payload === null) {
    return result({
      outcome: 'failed',
      latencyMs: 0,
      error: `payload too large: over ${MAX_PLAINTEXT_BYTES} bytes without the body`,
    });
  }
  const now = options.now();
  let details: webpush.RequestDetails;
  try {
    details = webpush.generateRequestDetails(subscription, payload, {
      vapidDetails: { subject: config.subject, publicKey: config.public_key, privateKey: config.private_key },
      TTL: ttlFor(message, now),
      urgency: URGENCY[message.severity],
      topic: topicFor(message.id),
      contentEncoding: 'aes128gcm',
    });
  } catch (error) {
    return result({
      outcome: 'failed',
      latencyMs: elapsed(),
      error: `cannot build request: ${(error as Error).message}`,
    });
  }
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(details.headers)) headers[name.toLowerCase()] = String(value);
  try {
    const answer = await post(details.endpoint, headers, details.body ?? undefined, options);
    return classify(answer.status, answer.headers, answer.text, elapsed(), options.now());
  } catch (error) {
    return networkFailure(error, options.timeoutMs, elapsed());
  }
}

/** Web Push with VAPID (`webpush`, channel `push`); the address is a browser's {@link PushSubscription}. */
export const webPushProvider: ProviderKind<WebPushConfig, PushSubscription> = {
  kind: 'webpush',
  channel: 'push',
  validate: validateConfig,
  redact: (config) => ({ subject: config.subject, public_key: config.public_key, private_key: '********' }),
  create(config: WebPushConfig, options: ProviderOptions): Provider<PushSubscription> {
    return {
      send: (message, address) => send(config, options, message, address),
      // The dispatcher is shared and owned by the caller.
      close: async () => {},
    };
  },
};
