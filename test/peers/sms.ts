import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { smsSegments } from '../../src/channels/sms-text.ts';

/** A message the peer accepted. */
export interface SmsRecord {
  sid: string;
  to: string;
  from: string | null;
  messagingServiceSid: string | null;
  body: string;
  statusCallback: string | null;
  numSegments: number;
}

/** A status callback's options: by default it goes to the message's `StatusCallback`, signed as Twilio signs. */
export interface StatusReport {
  /** `ErrorCode`, as Twilio adds it to `undelivered` and `failed`. */
  errorCode?: number;
  /**
   * Where to send the request instead of the `StatusCallback`'s origin (a proxy in front of Herald); the
   * signature still covers the `StatusCallback` URL, as it does at Twilio.
   */
  via?: string;
  /** Sign with this auth token instead of the account's; null sends no signature. */
  authToken?: string | null;
  /** Parameters to change or leave out (null) after signing: a tampered request. */
  tamper?: Record<string, string | null>;
}

/** Herald's answer to a status callback. */
export interface CallbackAnswer {
  status: number;
  contentType: string | null;
  body: string;
}

/**
 * A local stand-in for Twilio's Messages API on 127.0.0.1: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
 * Basic auth and a form body, answered the way Twilio does (201 with the message resource, or
 * `{code, message, more_info, status}`). Like Twilio, it reports a message's progress to its `StatusCallback`
 * with a form signed by `X-Twilio-Signature` (base64 HMAC-SHA1 under the auth token of the URL followed by the
 * parameters sorted by name, each name followed by its value).
 */
export interface SmsPeer {
  /** `http://127.0.0.1:<port>`: the `base_url` to configure. */
  readonly baseUrl: string;
  readonly accountSid: string;
  readonly authToken: string;
  /** A sender number the account owns. */
  readonly from: string;
  /** A Messaging Service of the account. */
  readonly messagingServiceSid: string;
  /** Accepted messages, in order. */
  readonly messages: SmsRecord[];
  /** How many requests arrived, accepted or not. */
  readonly requestCount: number;
  /** Twilio answers 400 code 21211 for this number. */
  invalidNumber(phone: string): void;
  /** The recipient texted STOP: 400 code 21610. */
  optedOut(phone: string): void;
  /** The next request gets this status and Twilio error code (429 20429, 500 20500, ...). */
  replyNext(status: number, code: number, headers?: Record<string, string>): void;
  /** Resolves once `count` messages were accepted; returns them all. */
  waitFor(count: number): Promise<SmsRecord[]>;
  /** POSTs a status callback for an accepted message (`sent`, `delivered`, `undelivered`, `failed`, ...). */
  reportStatus(sid: string, status: string, report?: StatusReport): Promise<CallbackAnswer>;
  close(): Promise<void>;
}

const MESSAGES: Record<number, string> = {
  20003: 'Authenticate',
  20404: 'The requested resource was not found',
  20429: 'Too Many Requests',
  20500: 'Internal Server Error',
  21602: 'Message body is required.',
  21603: "A 'From' phone number is required.",
  21604: "A 'To' phone number is required.",
  21408: "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
  21610: 'Attempt to send to unsubscribed recipient',
  21614: "'To' number is not a valid mobile number",
  21617: 'The concatenated message body exceeds the 1600 character limit.',
};

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

/** Twilio's request signature, written out here on its own so the test does not trust Herald's code for it. */
function twilioSign(authToken: string, url: string, params: [string, string][]): string {
  const data = [...params]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .reduce((text, [name, value]) => text + name + value, url);
  return createHmac('sha1', authToken).update(data, 'utf8').digest('base64');
}

/** The parameters of a status callback, as Twilio sends them for an SMS. */
function statusParams(accountSid: string, record: SmsRecord, status: string, errorCode?: number) {
  const params: [string, string][] = [
    ['ApiVersion', '2010-04-01'],
    ['SmsSid', record.sid],
    ['SmsStatus', status],
    ['MessageSid', record.sid],
    ['MessageStatus', status],
    ['AccountSid', accountSid],
    ['To', record.to],
  ];
  if (record.from !== null) params.push(['From', record.from]);
  if (record.messagingServiceSid !== null) params.push(['MessagingServiceSid', record.messagingServiceSid]);
  if (errorCode !== undefined) params.push(['ErrorCode', String(errorCode)]);
  return params;
}

function twilioError(status: number, code: number, message = MESSAGES[code] ?? 'Error') {
  return { status, body: { code, message, more_info: `https://www.twilio.com/docs/errors/${code}`, status } };
}

function authorized(header: string | undefined, expected: string): boolean {
  const given = Buffer.from(header ?? '');
  const wanted = Buffer.from(`Basic ${Buffer.from(expected).toString('base64')}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

/** Starts the peer; it is closed when the test ends. */
export async function startSmsPeer(t: TestContext): Promise<SmsPeer> {
  const accountSid = `AC${hex(16)}`;
  const authToken = hex(16);
  const invalid = new Set<string>();
  const stopped = new Set<string>();
  const messages: SmsRecord[] = [];
  const forced: { status: number; code: number; headers: Record<string, string> }[] = [];
  const waiters: { count: number; resolve: (messages: SmsRecord[]) => void }[] = [];
  let requestCount = 0;
  const messagingServiceSid = `MG${hex(16)}`;

  const handle = (method: string, path: string, auth: string | undefined, form: URLSearchParams) => {
    if (method !== 'POST' || path !== `/2010-04-01/Accounts/${accountSid}/Messages.json`) {
      return twilioError(404, 20404);
    }
    if (!authorized(auth, `${accountSid}:${authToken}`)) return twilioError(401, 20003);
    const to = form.get('To');
    const from = form.get('From');
    const service = form.get('MessagingServiceSid');
    const body = form.get('Body');
    if (!to) return twilioError(400, 21604);
    if (!from && !service) return twilioError(400, 21603);
    if (!body) return twilioError(400, 21602);
    if (body.length > 1600) return twilioError(400, 21617);
    if (invalid.has(to) || !/^\+[1-9]\d{1,14}$/.test(to)) {
      return twilioError(400, 21211, `The 'To' number ${to} is not a valid phone number.`);
    }
    if (stopped.has(to)) return twilioError(400, 21610);
    const record: SmsRecord = {
      sid: `SM${hex(16)}`,
      to,
      from: from || null,
      messagingServiceSid: service || null,
      body,
      statusCallback: form.get('StatusCallback'),
      numSegments: smsSegments(body),
    };
    messages.push(record);
    for (const waiter of waiters.filter((w) => messages.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(messages);
    }
    const uri = `/2010-04-01/Accounts/${accountSid}/Messages/${record.sid}.json`;
    return {
      status: 201,
      body: {
        account_sid: accountSid,
        api_version: '2010-04-01',
        body,
        date_created: new Date().toUTCString().replace('GMT', '+0000'),
        direction: 'outbound-api',
        error_code: null,
        error_message: null,
        // With a messaging service Twilio picks the sender later: `accepted`, and no `from` yet.
        from: record.from,
        messaging_service_sid: record.messagingServiceSid,
        num_media: '0',
        num_segments: String(record.numSegments),
        sid: record.sid,
        status: service ? 'accepted' : 'queued',
        to,
        uri,
      },
    };
  };

  const reply = (res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      requestCount += 1;
      const next = forced.shift();
      if (next !== undefined) {
        const { body } = twilioError(next.status, next.code);
        reply(res, next.status, body, next.headers);
        return;
      }
      const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const path = new URL(req.url ?? '/', 'http://peer').pathname;
      const answer = handle(req.method ?? '', path, req.headers.authorization, form);
      reply(res, answer.status, answer.body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');

  let closed = false;
  const peer: SmsPeer = {
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    accountSid,
    authToken,
    from: '+15005550006',
    messagingServiceSid,
    messages,
    get requestCount() {
      return requestCount;
    },
    invalidNumber: (phone) => void invalid.add(phone),
    optedOut: (phone) => void stopped.add(phone),
    replyNext(status, code, headers = {}) {
      forced.push({ status, code, headers });
    },
    waitFor(count) {
      if (messages.length >= count) return Promise.resolve(messages);
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    async reportStatus(sid, status, report = {}) {
      const record = messages.find((m) => m.sid === sid);
      if (record?.statusCallback == null)
        throw new Error(`message ${sid} was not sent with a StatusCallback`);
      const params = statusParams(accountSid, record, status, report.errorCode);
      const token = report.authToken === undefined ? authToken : report.authToken;
      const headers: Record<string, string> = {
        'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
        'user-agent': 'TwilioProxy/1.1',
      };
      if (token !== null) headers['x-twilio-signature'] = twilioSign(token, record.statusCallback, params);
      const form = new URLSearchParams(params);
      for (const [name, value] of Object.entries(report.tamper ?? {})) {
        if (value === null) form.delete(name);
        else form.set(name, value);
      }
      const target = new URL(record.statusCallback);
      const url = report.via === undefined ? target : new URL(target.pathname + target.search, report.via);
      const response = await fetch(url, { method: 'POST', headers, body: form.toString() });
      return {
        status: response.status,
        contentType: response.headers.get('content-type'),
        body: await response.text(),
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  t.after(() => peer.close());
  return peer;
}
