import { createHmac, timingSafeEqual } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { retryAfter } from '../delivery/webhook.ts';
import {
  ChannelConfigError,
  type Message,
  type ProviderKind,
  type ProviderOptions,
  result,
  type SendResult,
  truncate,
} from './channel.ts';
import { noAnswer, post } from './http.ts';
import { fitSms } from './sms-text.ts';

/*
 * SMS through Twilio's Messages API (or any service that speaks it): POST form-encoded `To`, `From` (or
 * `MessagingServiceSid`) and `Body` to `/2010-04-01/Accounts/{AccountSid}/Messages.json` with Basic auth
 * `AccountSid:AuthToken`. Accepted messages come back 201 with the message resource (`sid` `SM…`); errors as
 * `{code, message, more_info, status}` (twilio.com/docs/api/errors).
 *
 * Delivery receipts: each message names a `StatusCallback` URL, and Twilio POSTs the message's progress there
 * (`MessageSid`, `MessageStatus`, `ErrorCode`, ...), signed with `X-Twilio-Signature` (see twilioSignature).
 */

/** A Twilio (or Twilio-compatible) account. */
export interface SmsConfig {
  /** API origin; `https://api.twilio.com` unless a compatible service is used. */
  base_url: string;
  /** `AC` and 32 hex digits. */
  account_sid: string;
  auth_token: string;
  /** The sender: an E.164 number, or a messaging service (`MG` and 32 hex digits). */
  from: string;
  /** At most this many segments per message (1 to 10); longer texts are shortened. */
  max_segments: number;
  /**
   * Where Twilio reports delivery status; null for Herald's own receiver (`<public URL>/v1/integrations/sms/status`).
   * Set it when Twilio reaches Herald under another URL than the public one.
   */
  status_callback: string | null;
}

const E164 = /^\+[1-9]\d{1,14}$/;
const ACCOUNT_SID = /^AC[0-9a-fA-F]{32}$/;
const SERVICE_SID = /^MG[0-9a-fA-F]{32}$/;
const KEYS = ['base_url', 'account_sid', 'auth_token', 'from', 'max_segments', 'status_callback'];
// 429 from Twilio rarely carries Retry-After; a second keeps a busy account from being hammered.
const MIN_THROTTLE_MS = 1000;
/** Twilio errors that say the number itself cannot receive: 21211 invalid To, 21614 not mobile, 21610 STOP. */
const GONE_CODES = new Set([21211, 21614, 21610]);

function isHttpUrl(value: unknown): value is string {
  return typeof value === 'string' && URL.canParse(value) && /^https?:$/.test(new URL(value).protocol);
}

function validateConfig(config: unknown): SmsConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ChannelConfigError('', 'twilio needs an object with account_sid, auth_token and from');
  }
  const c = config as Record<string, unknown>;
  const unknown = Object.keys(c).find((key) => !KEYS.includes(key));
  if (unknown !== undefined)
    throw new ChannelConfigError(`/${unknown}`, `unknown field; twilio takes ${KEYS.join(', ')}`);
  const baseUrl = c['base_url'] ?? 'https://api.twilio.com';
  if (!isHttpUrl(baseUrl))
    throw new ChannelConfigError('/base_url', 'must be an http(s) URL such as https://api.twilio.com');
  const sid = c['account_sid'];
  if (typeof sid !== 'string' || !ACCOUNT_SID.test(sid)) {
    throw new ChannelConfigError('/account_sid', 'must be the Account SID: AC followed by 32 hex digits');
  }
  const token = c['auth_token'];
  if (typeof token !== 'string' || token.trim() === '') {
    throw new ChannelConfigError('/auth_token', 'must be the account auth token (a non-empty string)');
  }
  const from = c['from'];
  if (typeof from !== 'string' || !(E164.test(from) || SERVICE_SID.test(from))) {
    throw new ChannelConfigError(
      '/from',
      'must be an E.164 number (+14155550100) or a Messaging Service SID (MG followed by 32 hex digits)',
    );
  }
  const maxSegments = c['max_segments'] ?? 3;
  if (
    typeof maxSegments !== 'number' ||
    !Number.isInteger(maxSegments) ||
    maxSegments < 1 ||
    maxSegments > 10
  ) {
    throw new ChannelConfigError('/max_segments', 'must be a whole number from 1 to 10');
  }
  const callback = c['status_callback'] ?? null;
  if (callback !== null && !isHttpUrl(callback)) {
    throw new ChannelConfigError('/status_callback', 'must be an http(s) URL, or left out');
  }
  return {
    base_url: baseUrl.replace(/\/+$/, ''),
    account_sid: sid,
    auth_token: token,
    from,
    max_segments: maxSegments,
    status_callback: callback,
  };
}

function parse(text: string): Record<string, unknown> {
  try {
    const body: unknown = JSON.parse(text);
    if (typeof body === 'object' && body !== null) return body as Record<string, unknown>;
  } catch {}
  return {};
}

function classify(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  latencyMs: number,
  now: number,
): SendResult {
  const base = { statusCode: status, latencyMs, response: truncate(text) };
  const body = parse(text);
  if (status >= 200 && status < 300) {
    const sid = typeof body['sid'] === 'string' ? body['sid'] : null;
    return result({ ...base, outcome: 'succeeded', providerMessageId: sid });
  }
  const code = typeof body['code'] === 'number' ? body['code'] : null;
  const detail = typeof body['message'] === 'string' ? body['message'] : `HTTP ${status}`;
  const error = (code === null ? detail : `${code}: ${detail}`).slice(0, 500);
  if (status === 429) {
    const retryAfterMs = Math.max(retryAfter(headers['retry-after'], now) ?? 0, MIN_THROTTLE_MS);
    return result({ ...base, outcome: 'retry', retryAfterMs, error });
  }
  if (status === 400 && code !== null && GONE_CODES.has(code)) {
    return result({ ...base, outcome: 'failed', addressGone: true, error });
  }
  if (status === 400 || status === 413 || status === 422)
    return result({ ...base, outcome: 'failed', error });
  // Authentication (20003), an unknown account (404), a redirect or a 5xx: the provider, not the message.
  return result({ ...base, outcome: 'retry', providerFault: true, error });
}

function networkFailure(error: unknown, timeoutMs: number, latencyMs: number): SendResult {
  // The provider's URL is the operator's: a refusal is a fault of the provider's configuration, so the next
  // provider is tried, as for any other unanswered request.
  return result({ outcome: 'retry', latencyMs, providerFault: true, error: noAnswer(error, timeoutMs) });
}

async function send(
  config: SmsConfig,
  options: ProviderOptions,
  message: Message,
  to: string,
): Promise<SendResult> {
  if (!E164.test(to)) {
    return result({
      outcome: 'failed',
      latencyMs: 0,
      addressGone: true,
      error: 'bad address: not an E.164 number',
    });
  }
  const form = new URLSearchParams({ To: to });
  form.set(config.from.startsWith('MG') ? 'MessagingServiceSid' : 'From', config.from);
  form.set(
    'Body',
    fitSms({ title: message.title, text: message.text, url: message.url }, config.max_segments),
  );
  const callback = statusCallbackUrl(config, options.publicUrl);
  if (callback !== null) form.set('StatusCallback', callback);
  const url = `${config.base_url}/2010-04-01/Accounts/${config.account_sid}/Messages.json`;
  const credentials = Buffer.from(`${config.account_sid}:${config.auth_token}`).toString('base64');
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const answer = await post(
      url,
      {
        authorization: `Basic ${credentials}`,
        'content-type': 'application/x-www-form-urlencoded',
        accept: 'application/json',
        'user-agent': 'Herald/1.0',
      },
      form.toString(),
      options,
    );
    return classify(answer.status, answer.headers, answer.text, elapsed(), options.now());
  } catch (error) {
    return networkFailure(error, options.timeoutMs, elapsed());
  }
}

/** Where Herald receives Twilio's status callbacks: this route under `/v1` of its public URL. */
export const STATUS_CALLBACK_ROUTE = '/integrations/sms/status';

/** The `StatusCallback` a provider sends with each message: its own setting, or Herald's receiver. */
export function statusCallbackUrl(config: SmsConfig, publicUrl: string | undefined): string | null {
  return (
    config.status_callback ?? (publicUrl === undefined ? null : `${publicUrl}/v1${STATUS_CALLBACK_ROUTE}`)
  );
}

const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Twilio's request signature (twilio.com/docs/usage/security#validating-requests): base64 HMAC-SHA1 under the
 * account's auth token of the full URL Twilio called, followed by every POST parameter sorted by name, each name
 * immediately followed by its value.
 */
export function twilioSignature(authToken: string, url: string, params: URLSearchParams): string {
  // A repeated name keeps each of its values, in value order (as Twilio's own validators do).
  const sorted = [...params].sort(([a, x], [b, y]) => byCodeUnit(a, b) || byCodeUnit(x, y));
  const hmac = createHmac('sha1', authToken).update(url);
  for (const [name, value] of sorted) hmac.update(name).update(value);
  return hmac.digest('base64');
}

/** Whether `signature` (the `X-Twilio-Signature` header) is Twilio's for this request; compared in constant time. */
export function isTwilioSigned(
  authToken: string,
  url: string,
  params: URLSearchParams,
  signature: string,
): boolean {
  const expected = Buffer.from(twilioSignature(authToken, url, params));
  const given = Buffer.from(signature);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** SMS through Twilio's Messages API (`twilio`, channel `sms`); the address is an E.164 phone number. */
export const twilioProvider: ProviderKind<SmsConfig, string> = {
  kind: 'twilio',
  channel: 'sms',
  validate: validateConfig,
  redact: (config) => ({ ...config, auth_token: '********' }),
  create: (config, options) => ({
    send: (message, address) => send(config, options, message, address),
    async close() {},
  }),
};
