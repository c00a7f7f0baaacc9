import { randomBytes, randomInt } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { exportPKCS8, generateKeyPair, jwtVerify } from 'jose';

/*
 * A local stand-in for Google's OAuth token endpoint and the FCM HTTP v1 API. It makes its own service account
 * key, verifies the JWT bearer assertion against it (RS256, aud, iss, scope, exp), accepts only the access
 * tokens it issued and answers with FCM's real error bodies.
 */

const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const FCM_ERROR = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const STATUS: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};
const MESSAGES: Record<string, string> = {
  INVALID_ARGUMENT: 'Request contains an invalid argument.',
  UNREGISTERED: 'Requested entity was not found.',
  QUOTA_EXCEEDED: 'Quota exceeded for quota metric messages per minute.',
  UNAVAILABLE: 'The service is currently unavailable.',
  INTERNAL: 'Internal error encountered.',
  SENDER_ID_MISMATCH: 'SenderId mismatch',
  THIRD_PARTY_AUTH_ERROR: 'Auth error from APNS or Web Push Service',
};

/** A message FCM accepted. */
export interface FcmReceived {
  project: string;
  /** The `message` object of the request body. */
  message: Record<string, any>;
  headers: IncomingHttpHeaders;
}

/** The key file Google hands out for a service account (the fields Herald reads, and a few it ignores). */
export interface ServiceAccountKey {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  token_uri: string;
}

export interface FcmPeer {
  /** `http://127.0.0.1:<port>`: the provider's `base_url`. */
  readonly url: string;
  readonly projectId: string;
  readonly serviceAccount: ServiceAccountKey;
  readonly messages: FcmReceived[];
  /** How many access tokens were asked for. */
  readonly tokenRequests: number;
  /** Later sends to `token` get 404 UNREGISTERED. */
  unregister(token: string): void;
  /** The next send gets this error (after authentication), with FCM's body for `errorCode`. */
  replyNext(status: number, errorCode: string, headers?: Record<string, string>): void;
  /** Every access token issued so far stops working (401 UNAUTHENTICATED). */
  revokeTokens(): void;
  /** Resolves once `count` messages were accepted. */
  waitForMessages(count: number): Promise<FcmReceived[]>;
  close(): Promise<void>;
}

function errorBody(status: number, message: string, details: unknown[] = []): string {
  const error: Record<string, unknown> = { code: status, message, status: STATUS[status] ?? 'UNKNOWN' };
  if (details.length > 0) error['details'] = details;
  return JSON.stringify({ error });
}

function fcmError(status: number, errorCode: string, message = MESSAGES[errorCode] ?? errorCode): string {
  return errorBody(status, message, [{ '@type': FCM_ERROR, errorCode }]);
}

function invalidField(field: string, description: string): string {
  return errorBody(400, description, [
    { '@type': FCM_ERROR, errorCode: 'INVALID_ARGUMENT' },
    { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field, description }] },
  ]);
}

// What FCM checks of a message before accepting it (a subset: the fields Herald sends).
function problem(message: Record<string, any> | undefined): string | null {
  if (typeof message !== 'object' || message === null) return invalidField('message', 'Missing message.');
  if (typeof message['token'] !== 'string' || !/^[\w:-]+$/.test(message['token'])) {
    return invalidField('message.token', 'The registration token is not a valid FCM registration token');
  }
  for (const [key, value] of Object.entries(message['data'] ?? {})) {
    if (typeof value !== 'string')
      return invalidField(`message.data[${key}].value`, 'Invalid value (TYPE_STRING)');
    if (key === 'from' || key.startsWith('google.'))
      return invalidField('message.data', `Invalid data key: ${key}`);
  }
  const android = message['android'] ?? {};
  if (android.priority !== undefined && !['normal', 'high'].includes(android.priority)) {
    return invalidField('message.android.priority', 'Invalid value at android.priority');
  }
  if (android.ttl !== undefined && !/^\d+(\.\d{1,9})?s$/.test(android.ttl)) {
    return invalidField('message.android.ttl', 'Invalid value at android.ttl (Duration)');
  }
  return null;
}

/** Starts the stand-in, closed when the test ends. */
export async function startFcmPeer(t: TestContext, options: { expiresIn?: number } = {}): Promise<FcmPeer> {
  const projectId = `herald-test-${randomInt(1000, 9999)}`;
  const { publicKey, privateKey } = await generateKeyPair('RS256', { extractable: true });
  const clientEmail = `herald@${projectId}.iam.gserviceaccount.com`;
  const issued = new Set<string>();
  const gone = new Set<string>();
  const queued: { status: number; errorCode: string; headers: Record<string, string> }[] = [];
  const messages: FcmReceived[] = [];
  const waiters: { count: number; resolve: (m: FcmReceived[]) => void }[] = [];
  let tokenRequests = 0;
  let tokenUri = '';

  const send = (res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...headers }).end(body);
  };

  const token = async (form: URLSearchParams, res: ServerResponse) => {
    tokenRequests++;
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') {
      return send(
        res,
        400,
        JSON.stringify({ error: 'unsupported_grant_type', error_description: 'Invalid grant_type' }),
      );
    }
    try {
      const { payload } = await jwtVerify(form.get('assertion') ?? '', publicKey, {
        algorithms: ['RS256'],
        audience: tokenUri,
        issuer: clientEmail,
        requiredClaims: ['iat', 'exp', 'scope'],
      });
      if (payload.sub !== clientEmail) throw new Error('sub is not the service account');
      if (!String(payload['scope']).split(' ').includes(SCOPE)) throw new Error('scope');
      if (payload.exp! - payload.iat! > 3600) throw new Error('exp more than an hour after iat');
    } catch (error) {
      const description = `Invalid JWT: ${(error as Error).message}`;
      return send(res, 400, JSON.stringify({ error: 'invalid_grant', error_description: description }));
    }
    const accessToken = `ya29.${randomBytes(24).toString('base64url')}`;
    issued.add(accessToken);
    send(
      res,
      200,
      JSON.stringify({
        access_token: accessToken,
        expires_in: options.expiresIn ?? 3599,
        token_type: 'Bearer',
      }),
    );
  };

  const messagesSend = (project: string, headers: IncomingHttpHeaders, text: string, res: ServerResponse) => {
    const bearer = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1];
    if (bearer === undefined || !issued.has(bearer)) {
      const message =
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';
      return send(res, 401, errorBody(401, message), {
        'www-authenticate': 'Bearer realm="https://accounts.google.com/"',
      });
    }
    if (project !== projectId) return send(res, 404, errorBody(404, 'Requested entity was not found.'));
    const next = queued.shift();
    if (next) return send(res, next.status, fcmError(next.status, next.errorCode), next.headers);
    let parsed: { message?: Record<string, any> };
    try {
      parsed = JSON.parse(text);
    } catch {
      return send(res, 400, errorBody(400, 'Invalid JSON payload received.'));
    }
    const invalid = problem(parsed.message);
    if (invalid !== null) return send(res, 400, invalid);
    const message = parsed.message!;
    if (gone.has(message['token'])) return send(res, 404, fcmError(404, 'UNREGISTERED'));
    messages.push({ project, message, headers });
    for (const waiter of waiters.filter((w) => messages.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve([...messages]);
    }
    send(
      res,
      200,
      JSON.stringify({ name: `projects/${project}/messages/0:${Date.now()}%${randomInt(1e9)}` }),
    );
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const path = new URL(req.url ?? '/', 'http://peer').pathname;
      const route = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(path);
      if (req.method === 'POST' && path === '/token') void token(new URLSearchParams(text), res);
      else if (req.method === 'POST' && route)
        messagesSend(decodeURIComponent(route[1]!), req.headers, text, res);
      else send(res, 404, errorBody(404, `The requested URL ${path} was not found on this server.`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  tokenUri = `${url}/token`;
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  t.after(close);

  return {
    url,
    projectId,
    serviceAccount: {
      type: 'service_account',
      project_id: projectId,
      private_key_id: randomBytes(20).toString('hex'),
      private_key: await exportPKCS8(privateKey),
      client_email: clientEmail,
      client_id: String(randomInt(1e9, 1e10)),
      token_uri: tokenUri,
    },
    messages,
    get tokenRequests() {
      return tokenRequests;
    },
    unregister: (registrationToken) => gone.add(registrationToken),
    replyNext: (status, errorCode, headers = {}) => queued.push({ status, errorCode, headers }),
    revokeTokens: () => issued.clear(),
    waitForMessages: (count) =>
      messages.length >= count
        ? Promise.resolve([...messages])
        : new Promise((resolve) => waiters.push({ count, resolve })),
    close,
  };
}
