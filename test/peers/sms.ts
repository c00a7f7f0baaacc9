import { randomBytes, timingSafeEqual } from 'node:crypto';
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

/**
 * A local stand-in for Twilio's Messages API on 127.0.0.1: `POST /2010-04-01/Accounts/{sid}/Messages.json` with
 * Basic auth and a form body, answered the way Twilio does (201 with the message resource, or
 * `{code, message, more_info, status}`).
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
