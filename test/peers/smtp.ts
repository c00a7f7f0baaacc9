import type { TestContext } from 'node:test';
import { type HeaderLines, type ParsedMail, simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerError } from 'smtp-server';

/**
 * A real SMTP server on 127.0.0.1 for tests (smtp-server, no TLS), recording what it receives. It stands in for
 * the relay Herald sends through: it can reject a recipient or a message with a chosen reply code, require
 * authentication, and go down so connections are refused.
 *
 * ```ts
 * const peer = await startSmtpPeer(t);
 * await provider.send(message, 'ann@example.com');
 * const [mail] = await peer.waitForMessages(1);
 * assert.equal(mail.parsed.subject, 'Approve PO-1');
 * ```
 */

/** One message the peer accepted. */
export interface ReceivedMail {
  /** The SMTP envelope: MAIL FROM and every accepted RCPT TO. */
  envelope: { from: string; to: string[] };
  /** The user that authenticated, or null. */
  user: string | null;
  /** The message as mailparser's `simpleParser` reads it (subject, from, to, text, html, headers...). */
  parsed: ParsedMail;
  /** The raw header lines as sent (`{ key: 'list-unsubscribe', line: 'List-Unsubscribe: <...>' }`), unfolded. */
  headerLines: HeaderLines;
  /** The whole message as received. */
  raw: string;
}

export interface SmtpPeerOptions {
  /** Require AUTH (PLAIN or LOGIN) with these credentials; any other credentials get 535. */
  auth?: { user: string; pass: string };
}

export interface SmtpPeer {
  /** `smtp://127.0.0.1:<port>`, without credentials. */
  readonly url: string;
  readonly port: number;
  /** Every message accepted so far, in order. */
  readonly messages: ReceivedMail[];
  /** The url with credentials: `smtp://user:pass@127.0.0.1:<port>`. */
  urlWithAuth(user: string, pass: string): string;
  /** Resolves once at least `count` messages were accepted, with the messages accepted so far. */
  waitForMessages(count: number): Promise<ReceivedMail[]>;
  /**
   * Answers RCPT TO for `address` with `code` (550 by default), `times` times (always by default); the message
   * defaults to a text fitting the code, e.g. `550 5.1.1 Mailbox unavailable`.
   */
  rejectRecipient(address: string, code?: number, options?: { message?: string; times?: number }): void;
  /** Makes the next message (its end of DATA) get `code` and `message` instead of 250. Calls queue up. */
  failNext(code: number, message?: string): void;
  /** Shuts the server down: open connections get 421 and are closed, new ones are refused. */
  stop(): Promise<void>;
}

const DEFAULT_TEXT: Record<number, string> = {
  421: '4.3.2 Service not available, closing channel',
  450: '4.2.0 Mailbox unavailable, try again later',
  451: '4.3.0 Local error in processing, try again later',
  452: '4.2.2 Insufficient storage',
  550: '5.1.1 Mailbox unavailable',
  551: '5.1.6 User not local',
  552: '5.3.4 Message too big',
  553: '5.1.3 Mailbox name not allowed',
  554: '5.6.0 Transaction failed',
};

/** Starts an {@link SmtpPeer}; it is stopped when the test ends. */
export async function startSmtpPeer(t: TestContext, options: SmtpPeerOptions = {}): Promise<SmtpPeer> {
  const messages: ReceivedMail[] = [];
  const waiters: { count: number; resolve: (mails: ReceivedMail[]) => void }[] = [];
  const rejections = new Map<string, { code: number; message: string; times: number }>();
  const failures: { code: number; message: string }[] = [];

  const smtpError = (code: number, message: string | undefined): SMTPServerError => {
    const error: SMTPServerError = new Error(message ?? DEFAULT_TEXT[code] ?? 'Rejected');
    error.responseCode = code;
    return error;
  };

  const record = (mail: ReceivedMail) => {
    messages.push(mail);
    for (const waiter of [...waiters]) {
      if (messages.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve([...messages]);
      }
    }
  };

  const server = new SMTPServer({
    authOptional: options.auth === undefined,
    allowInsecureAuth: true,
    disabledCommands: options.auth === undefined ? ['STARTTLS', 'AUTH'] : ['STARTTLS'],
    authMethods: ['PLAIN', 'LOGIN'],
    logger: false,
    disableReverseLookup: true,
    onAuth(auth, _session, callback) {
      if (auth.username === options.auth?.user && auth.password === options.auth?.pass) {
        callback(null, { user: auth.username });
      } else {
        callback(smtpError(535, '5.7.8 Authentication credentials invalid'));
      }
    },
    onRcptTo(address, _session, callback) {
      const rejection = rejections.get(address.address.toLowerCase());
      if (rejection === undefined) return callback();
      if (--rejection.times <= 0) rejections.delete(address.address.toLowerCase());
      callback(smtpError(rejection.code, rejection.message));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', callback);
      stream.on('end', () => {
        const failure = failures.shift();
        if (failure !== undefined) return callback(smtpError(failure.code, failure.message));
        const raw = Buffer.concat(chunks);
        simpleParser(raw).then((parsed) => {
          const from = session.envelope.mailFrom;
          record({
            envelope: {
              from: from === false ? '' : from.address,
              to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
            },
            user: typeof session.user === 'string' ? session.user : null,
            parsed,
            headerLines: parsed.headerLines,
            raw: raw.toString('utf8'),
          });
          callback(null, `Message queued as ${messages.length}`);
        }, callback);
      });
    },
  });
  server.on('error', () => {});

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.server.address();
  if (address === null || typeof address === 'string') throw new Error('smtp peer did not get a TCP port');
  const port = address.port;

  let stopped: Promise<void> | null = null;
  const stop = () => {
    stopped ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const connection of server.connections) {
        connection.send(421, 'Server shutting down');
        connection.close();
      }
    });
    return stopped;
  };
  t.after(stop);

  return {
    url: `smtp://127.0.0.1:${port}`,
    port,
    messages,
    urlWithAuth: (user, pass) =>
      `smtp://${encodeURIComponent(user)}:${encodeURIComponent(pass)}@127.0.0.1:${port}`,
    waitForMessages(count) {
      if (messages.length >= count) return Promise.resolve([...messages]);
      return new Promise((resolve) => waiters.push({ count, resolve }));
    },
    rejectRecipient(recipient, code = 550, { message, times = Number.POSITIVE_INFINITY } = {}) {
      rejections.set(recipient.toLowerCase(), {
        code,
        message: message ?? DEFAULT_TEXT[code] ?? 'Rejected',
        times,
      });
    },
    failNext(code, message) {
      failures.push({ code, message: message ?? DEFAULT_TEXT[code] ?? 'Rejected' });
    },
    stop,
  };
}
