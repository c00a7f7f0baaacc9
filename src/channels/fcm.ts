import { performance } from 'node:perf_hooks';
import { type CryptoKey, importPKCS8, SignJWT } from 'jose';
import { type Dispatcher, errors, request } from 'undici';
import { retryAfter } from '../delivery/webhook.ts';
import { apnsCollapseId, apnsPriority, checkPrivateKey } from './apns.ts';
import {
  ChannelConfigError,
  type Message,
  type Provider,
  type ProviderKind,
  type ProviderOptions,
  result,
  type SendResult,
  truncate,
} from './channel.ts';

/*
 * Firebase Cloud Messaging, HTTP v1 API: `POST {base}/v1/projects/{project}/messages:send` with an OAuth 2 access
 * token obtained from a service account key (JWT bearer grant, RFC 7523).
 */

const DEFAULT_BASE_URL = 'https://fcm.googleapis.com';
const DEFAULT_TOKEN_URI = 'https://oauth2.googleapis.com/token';
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const FCM_ERROR = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST = 'type.googleapis.com/google.rpc.BadRequest';
// FCM: "retry with exponential backoff, minimum initial delay 1 minute" after QUOTA_EXCEEDED.
const QUOTA_BACKOFF_MS = 60_000;
const MAX_TTL_S = 2_419_200;
const TOKEN_MARGIN_MS = 60_000;

/** The fields of a Google service account key file that are used (others are ignored). */
export interface FcmServiceAccount {
  project_id?: string;
  client_email: string;
  /** PEM PKCS#8 RSA key. */
  private_key: string;
  token_uri: string;
}

/** FCM provider settings, normalised by {@link fcmProvider}.validate. */
export interface FcmConfig {
  service_account: FcmServiceAccount;
  /** The Firebase project: `project_id` of the configuration, else of the key file. */
  project_id: string;
  /** `https://fcm.googleapis.com` unless overridden. */
  base_url: string;
}

function object(value: unknown, path: string, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ChannelConfigError(path, `${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

function httpUrl(value: unknown, path: string, example: string): string {
  if (typeof value !== 'string' || !/^https?:\/\//.test(value) || !URL.canParse(value)) {
    throw new ChannelConfigError(path, `expected an http(s) URL such as ${example}`);
  }
  return value.replace(/\/+$/, '');
}

function validate(input: unknown): FcmConfig {
  const config = object(input, '', 'the FCM configuration');
  const account = object(
    config['service_account'],
    '/service_account',
    'service_account (the JSON key file)',
  );
  const email = account['client_email'];
  if (typeof email !== 'string' || !email.includes('@')) {
    throw new ChannelConfigError('/service_account/client_email', 'client_email of the key file is missing');
  }
  const rawKey = account['private_key'];
  if (typeof rawKey !== 'string') {
    throw new ChannelConfigError('/service_account/private_key', 'private_key of the key file is missing');
  }
  // A key pasted through an environment variable often keeps its newlines as the two characters `\n`.
  const key = rawKey.replaceAll('\\n', '\n').trim();
  checkPrivateKey(key, '/service_account/private_key', 'rsa');
  const accountProject = typeof account['project_id'] === 'string' ? account['project_id'] : undefined;
  const project = config['project_id'] ?? accountProject;
  if (project === undefined || project === '') {
    throw new ChannelConfigError(
      '/project_id',
      'missing FCM project: set project_id or use a key file that has one',
    );
  }
  if (typeof project !== 'string' || !/^[A-Za-z0-9.:-]+$/.test(project)) {
    throw new ChannelConfigError('/project_id', 'project_id must be a Firebase project id (my-app-1234)');
  }
  const tokenUri = httpUrl(
    account['token_uri'] ?? DEFAULT_TOKEN_URI,
    '/service_account/token_uri',
    DEFAULT_TOKEN_URI,
  );
  const service_account: FcmServiceAccount = { client_email: email, private_key: key, token_uri: tokenUri };
  if (accountProject !== undefined) service_account.project_id = accountProject;
  const base_url = httpUrl(config['base_url'] ?? DEFAULT_BASE_URL, '/base_url', DEFAULT_BASE_URL);
  return { service_account, project_id: project, base_url };
}

/** Carries the token endpoint's answer when the exchange fails. */
class TokenError extends Error {
  override name = 'TokenError';
  readonly statusCode: number;
  readonly response: string;
  constructor(message: string, statusCode: number, response: string) {
    super(message);
    this.statusCode = statusCode;
    this.response = response;
  }
}

function timeouts(options: ProviderOptions) {
  const ms = options.timeoutMs;
  return { headersTimeout: ms, bodyTimeout: ms, signal: AbortSignal.timeout(ms) };
}

function parse(text: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** OAuth access tokens, cached until shortly before they expire; concurrent sends share one exchange. */
function accessTokens(account: FcmServiceAccount, options: ProviderOptions) {
  let key: Promise<CryptoKey> | null = null;
  let cached: { value: string; until: number } | null = null;
  let pending: Promise<string> | null = null;
  const exchange = async (): Promise<string> => {
    key ??= importPKCS8(account.private_key, 'RS256');
    const iat = Math.floor(options.now() / 1000);
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({ alg: 'RS256', typ: 'JWT' })
      .setIssuer(account.client_email)
      .setSubject(account.client_email)
      .setAudience(account.token_uri)
      .setIssuedAt(iat)
      .setExpirationTime(iat + 3600)
      .sign(await key);
    const response = await request(account.token_uri, {
      method: 'POST',
      dispatcher: options.dispatcher,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer',
        assertion,
      }).toString(),
      ...timeouts(options),
    });
    const text = await response.body.text();
    const body = parse(text);
    const token = body?.['access_token'];
    if (response.statusCode !== 200 || typeof token !== 'string') {
      const code = typeof body?.['error'] === 'string' ? body['error'] : `HTTP ${response.statusCode}`;
      const detail = typeof body?.['error_description'] === 'string' ? `: ${body['error_description']}` : '';
      throw new TokenError(`${code}: access token exchange failed${detail}`, response.statusCode, text);
    }
    const seconds = typeof body?.['expires_in'] === 'number' ? body['expires_in'] : 3600;
    cached = {
      value: token,
      until: options.now() + seconds * 1000 - Math.min(TOKEN_MARGIN_MS, seconds * 500),
    };
    return token;
  };
  return {
    get(): Promise<string> {
      if (cached !== null && options.now() < cached.until) return Promise.resolve(cached.value);
      pending ??= exchange().finally(() => {
        pending = null;
      });
      return pending;
    },
    drop(token: string): void {
      if (cached?.value === token) cached = null;
    },
  };
}

// FCM refuses data keys it reserves ("from", "message_type", "google.*", "gcm.notification.*").
function reserved(key: string): boolean {
  return (
    key === 'from' ||
    key === 'message_type' ||
    key.startsWith('google.') ||
    key.startsWith('gcm.notification.')
  );
}

function body(message: Message, token: string, now: number): string {
  const data: Record<string, string> = {};
  for (const [key, value] of Object.entries(message.data)) {
    if (typeof value === 'string' && !reserved(key)) data[key] = value;
  }
  if (message.notificationId !== null) data['notification_id'] = message.notificationId;
  data['event_id'] = message.eventId;
  if (message.url !== null) data['url'] = message.url;
  const collapse = apnsCollapseId(message.id);
  const urgent = message.severity === 'critical' || message.severity === 'error';
  const android: Record<string, string> = { priority: urgent ? 'high' : 'normal', collapse_key: collapse };
  const apns: Record<string, string> = {
    'apns-priority': apnsPriority(message.severity),
    'apns-collapse-id': collapse,
  };
  if (message.expiresAt !== null) {
    const seconds = Math.min(Math.max(Math.ceil((message.expiresAt - now) / 1000), 0), MAX_TTL_S);
    android['ttl'] = `${seconds}s`;
    apns['apns-expiration'] = String(Math.floor(message.expiresAt / 1000));
  }
  const notification = { title: message.title, body: message.text };
  return JSON.stringify({ message: { token, notification, data, android, apns: { headers: apns } } });
}

interface GoogleError {
  code: string;
  message: string;
  concernsToken: boolean;
}

type Detail = { '@type'?: string; errorCode?: string; fieldViolations?: { field?: string }[] };

/** The FCM errorCode (else the google.rpc status) and whether the problem is the registration token. */
function googleError(text: string, status: number): GoogleError {
  const error = parse(text)?.['error'] as
    | { message?: unknown; status?: unknown; details?: unknown }
    | undefined;
  const details = (Array.isArray(error?.details) ? error.details : []) as Detail[];
  const fcm = details.find((d) => d['@type'] === FCM_ERROR)?.errorCode;
  const code = fcm ?? (typeof error?.status === 'string' ? error.status : `HTTP ${status}`);
  const message = typeof error?.message === 'string' ? error.message : `HTTP ${status}`;
  const violations = details
    .filter((d) => d['@type'] === BAD_REQUEST)
    .flatMap((d) => d.fieldViolations ?? []);
  const concernsToken =
    violations.some((v) => v.field === 'message.token') ||
    (violations.length === 0 && /registration token/i.test(message));
  return { code, message, concernsToken };
}

function classify(
  status: number,
  headers: Record<string, string | string[] | undefined>,
  text: string,
  latencyMs: number,
  now: number,
): SendResult {
  const base = { statusCode: status, latencyMs, response: truncate(text) };
  if (status >= 200 && status < 300) {
    const name = parse(text)?.['name'];
    return result({
      ...base,
      outcome: 'succeeded',
      providerMessageId: typeof name === 'string' ? name : null,
    });
  }
  const { code, message, concernsToken } = googleError(text, status);
  const fields = { ...base, error: `${code}: ${message}`.slice(0, 500) };
  const wait = retryAfter(headers['retry-after'], now);
  switch (code) {
    case 'UNREGISTERED':
    case 'SENDER_ID_MISMATCH':
      return result({ ...fields, outcome: 'failed', addressGone: true });
    case 'INVALID_ARGUMENT':
      return result({ ...fields, outcome: 'failed', addressGone: concernsToken });
    case 'QUOTA_EXCEEDED':
      return result({ ...fields, outcome: 'retry', retryAfterMs: Math.max(wait ?? 0, QUOTA_BACKOFF_MS) });
  }
  if (status === 429) {
    return result({ ...fields, outcome: 'retry', retryAfterMs: Math.max(wait ?? 0, QUOTA_BACKOFF_MS) });
  }
  // 401/403 (credentials, permissions), 404 without UNREGISTERED (no such project) and 5xx are the provider's.
  if (status === 401 || status === 403 || status === 404 || status >= 500) {
    return result({ ...fields, outcome: 'retry', providerFault: true, retryAfterMs: wait });
  }
  return result({ ...fields, outcome: 'failed' });
}

function describe(error: unknown, timeoutMs: number): string {
  if (error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
    return `timeout: no complete response within ${timeoutMs / 1000} s`;
  }
  const e = error as Error & { cause?: unknown };
  if (e.name === 'TimeoutError' || e.name === 'AbortError')
    return `timeout: no response within ${timeoutMs / 1000} s`;
  const cause = e.cause instanceof Error && e.cause.message !== '' ? e.cause : e;
  if (cause.name === 'UnsafeAddressError') return `refused: ${cause.message}`;
  return (cause.message || String(error)).slice(0, 500);
}

function create(config: FcmConfig, options: ProviderOptions): Provider<string> {
  const tokens = accessTokens(config.service_account, options);
  const url = `${config.base_url}/v1/projects/${encodeURIComponent(config.project_id)}/messages:send`;
  const post = (access: string, message: Message, token: string): Promise<Dispatcher.ResponseData> =>
    request(url, {
      method: 'POST',
      dispatcher: options.dispatcher,
      headers: { authorization: `Bearer ${access}`, 'content-type': 'application/json; charset=utf-8' },
      body: body(message, token, options.now()),
      ...timeouts(options),
    });
  return {
    async send(message: Message, token: string): Promise<SendResult> {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      try {
        const access = await tokens.get();
        const response = await post(access, message, token);
        const text = await response.body.text();
        if (response.statusCode === 401) tokens.drop(access);
        return classify(response.statusCode, response.headers, text, elapsed(), options.now());
      } catch (error) {
        const latencyMs = elapsed();
        if (error instanceof TokenError) {
          const { statusCode, message } = error;
          const response = truncate(error.response);
          return result({
            outcome: 'retry',
            latencyMs,
            statusCode,
            response,
            error: message,
            providerFault: true,
          });
        }
        const text = describe(error, options.timeoutMs);
        return result({ outcome: 'retry', latencyMs, error: text, providerFault: true });
      }
    },
    close: async () => {},
  };
}

/** Firebase Cloud Messaging (HTTP v1); the address is the app instance's registration token. */
export const fcmProvider: ProviderKind<FcmConfig, string> = {
  kind: 'fcm',
  channel: 'push',
  validate,
  redact: (config) => ({
    ...config,
    service_account: { ...config.service_account, private_key: '********' },
  }),
  create,
};
