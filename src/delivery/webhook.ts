import { createHmac, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { type Dispatcher, errors } from 'undici';
import { result, type SendResult } from '../channels/channel.ts';
import { post } from '../channels/http.ts';

/*
 * Standard Webhooks (standard-webhooks/standard-webhooks, spec 1.0.0): the body is signed as
 * `${webhook-id}.${webhook-timestamp}.${body}` with HMAC-SHA256 under the endpoint's `whsec_` secret; the id
 * stays the same on every attempt of a message, the timestamp is the attempt's.
 */

const SECRET_PREFIX = 'whsec_';
const RETRY_AFTER_CAP_MS = 24 * 3600 * 1000;

/** A new signing secret: `whsec_` and 32 random bytes in base64. */
export function newWebhookSecret(): string {
  return SECRET_PREFIX + randomBytes(32).toString('base64');
}

/** Whether `secret` is `whsec_` followed by the canonical base64 of 24 to 64 bytes. */
export function isValidWebhookSecret(secret: string): boolean {
  if (!secret.startsWith(SECRET_PREFIX)) return false;
  const text = secret.slice(SECRET_PREFIX.length);
  const bytes = Buffer.from(text, 'base64');
  return bytes.length >= 24 && bytes.length <= 64 && bytes.toString('base64') === text;
}

// Turning a secret into a key object costs more than the HMAC itself; endpoints are few, so keep them.
const keys = new Map<string, KeyObject>();

function signingKey(secret: string): KeyObject {
  let key = keys.get(secret);
  if (key === undefined) {
    const text = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
    key = createSecretKey(Buffer.from(text, 'base64'));
    if (keys.size >= 1000) keys.clear();
    keys.set(secret, key);
  }
  return key;
}

/** The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `${msgId}.${ts}.${body}`. */
export function signWebhook(secret: string, msgId: string, timestampSeconds: number, body: string): string {
  const hmac = createHmac('sha256', signingKey(secret));
  return `v1,${hmac.update(`${msgId}.${timestampSeconds}.${body}`).digest('base64')}`;
}

/** One signed POST. */
export interface WebhookMessage {
  url: string;
  secret: string;
  /** `webhook-id`: the same on every attempt. */
  msgId: string;
  /** The exact bytes that are signed and sent. */
  body: string;
  /** Milliseconds; its whole seconds become `webhook-timestamp`. */
  at: number;
  /** Extra headers (the endpoint's own); they never replace the signature headers. */
  headers?: Record<string, string> | undefined;
}

export interface SendOptions {
  /** The agent to send through (the SSRF-guarded one from `createOutboundAgent`). */
  dispatcher: Dispatcher;
  timeoutMs: number;
  /** Now in milliseconds, to resolve a `Retry-After` date against. */
  now: () => number;
}

/** What one attempt came to: a channel result, plus the receiver's request to stop sending to the endpoint. */
export interface AttemptResult extends SendResult {
  /** Set when the receiver asked to stop sending to the endpoint: `gone` (410) or `receiver_requested`. */
  disableEndpoint: 'gone' | 'receiver_requested' | null;
}

/**
 * POSTs a signed message and classifies the answer the Standard Webhooks way: 2xx succeeded; 410 failed and
 * the endpoint is disabled; everything else (3xx, 4xx, 5xx, network errors, timeouts) is retried, except when
 * the receiver answers `webhook-delivery: abort-message` (failed) or `webhook-delivery: disable`. Never throws.
 */
export async function sendWebhook(message: WebhookMessage, options: SendOptions): Promise<AttemptResult> {
  const timestamp = Math.floor(message.at / 1000);
  const started = performance.now();
  try {
    const headers = {
      ...message.headers,
      'content-type': 'application/json',
      'user-agent': 'Herald-Webhooks/1.0',
      'webhook-id': message.msgId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signWebhook(message.secret, message.msgId, timestamp, message.body),
    };
    const answer = await post(message.url, headers, message.body, options);
    const latencyMs = Math.round(performance.now() - started);
    return classify(answer.status, answer.headers, answer.text, latencyMs, options.now());
  } catch (error) {
    const latencyMs = Math.round(performance.now() - started);
    return {
      ...result({ outcome: 'retry', latencyMs, error: describe(error, options.timeoutMs) }),
      disableEndpoint: null,
    };
  }
}

function classify(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  response: string,
  latencyMs: number,
  now: number,
): AttemptResult {
  const control = String(headers['webhook-delivery'] ?? '').toLowerCase();
  const answer: AttemptResult = {
    ...result({ outcome: 'retry', statusCode: status, latencyMs, response: response || null }),
    disableEndpoint: control === 'disable' ? 'receiver_requested' : null,
  };
  if (status >= 200 && status < 300) {
    answer.outcome = 'succeeded';
    return answer;
  }
  answer.error = status >= 300 && status < 400 ? `redirect (${status}) not followed` : `HTTP ${status}`;
  if (status === 410) {
    answer.outcome = 'failed';
    answer.disableEndpoint = 'gone';
  } else if (control === 'abort-message' || control === 'disable') {
    answer.outcome = 'failed';
  } else if (status === 429 || status === 503) {
    answer.retryAfterMs = retryAfter(headers['retry-after'], now);
  }
  return answer;
}

/** `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), in milliseconds from now; capped at 24 h. */
export function retryAfter(value: string | string[] | undefined, now: number): number | null {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (text === undefined || text === '') return null;
  let ms: number;
  if (/^\d+$/.test(text)) ms = Number(text) * 1000;
  else {
    const date = Date.parse(text);
    if (Number.isNaN(date)) return null;
    ms = date - now;
  }
  return Math.min(Math.max(ms, 0), RETRY_AFTER_CAP_MS);
}

function describe(error: unknown, timeoutMs: number): string {
  const seconds = timeoutMs / 1000;
  if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
    return `timeout: no complete response within ${seconds} s`;
  }
  if (error instanceof errors.ConnectTimeoutError) return `timeout: could not connect within ${seconds} s`;
  const e = error as Error & { name?: string; cause?: unknown };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return `timeout: no complete response within ${seconds} s`;
  const cause = e.cause instanceof Error ? e.cause : undefined;
  const base = cause !== undefined && cause.message !== '' ? cause : e;
  if (base.name === 'UnsafeAddressError') return `refused: ${base.message}`;
  if (base instanceof AggregateError && base.errors.length > 0)
    return String(base.errors[0]?.message ?? base.message);
  return (base.message || String(error)).slice(0, 500);
}
