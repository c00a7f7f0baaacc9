import type { BlockList } from 'node:net';
import { performance } from 'node:perf_hooks';
import nodemailer, { type NodemailerError, type SendMailOptions, type SMTPPoolOptions } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import { connectSafely } from '../delivery/ssrf.ts';
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

/** An SMTP relay, as configured through the API. */
export interface SmtpConfig {
  /** `smtp://user:password@host:587` or `smtps://...:465`; query options such as `?requireTLS=true` tune it. */
  url: string;
  /** The sender: `Name <address>` or a bare address. */
  from: string;
  reply_to?: string;
}

const REDACTED = '********';

// URL query options passed on to nodemailer; anything else is refused so a typo does not go unnoticed.
const QUERY_OPTIONS: Record<string, 'boolean' | 'string' | 'count'> = {
  secure: 'boolean',
  ignoreTLS: 'boolean',
  requireTLS: 'boolean',
  opportunisticTLS: 'boolean',
  'tls.rejectUnauthorized': 'boolean',
  'tls.servername': 'string',
  name: 'string',
  localAddress: 'string',
  authMethod: 'string',
  maxConnections: 'count',
  maxMessages: 'count',
  rateLimit: 'count',
  rateDelta: 'count',
};

const EMAIL = /^[^\s@<>()[\]",;:\\]+@[^\s@<>()[\]",;:\\]+\.[^\s@<>()[\]",;:\\]+$/u;

/**
 * Email over SMTP through one pooled nodemailer transport. The address is the recipient's email address.
 * Every message gets both bodies: `message.html`, or when it is null a small escaped HTML version of the text;
 * the link back to the record and the action links are added to each body unless it already carries them.
 */
export const smtpProvider: ProviderKind<SmtpConfig, string> = {
  kind: 'smtp',
  channel: 'email',
  validate: validateSmtpConfig,
  redact(config) {
    const url = new URL(config.url);
    if (url.password !== '') url.password = REDACTED;
    return { ...config, url: url.href };
  },
  create: createSmtpProvider,
};

function validateSmtpConfig(config: unknown): SmtpConfig {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ChannelConfigError('', 'must be an object with url and from');
  }
  const fields = config as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (key !== 'url' && key !== 'from' && key !== 'reply_to') {
      throw new ChannelConfigError(`/${key}`, 'unknown field; expected url, from and reply_to');
    }
  }
  const url = checkUrl(fields['url']);
  const from = checkMailbox(fields['from'], '/from');
  if (fields['reply_to'] === undefined) return { url, from };
  return { url, from, reply_to: checkMailbox(fields['reply_to'], '/reply_to') };
}

function checkUrl(value: unknown): string {
  const hint = 'must be a URL like smtp://user:password@host:587 or smtps://user:password@host:465';
  if (typeof value !== 'string') throw new ChannelConfigError('/url', hint);
  let url: URL;
  try {
    url = new URL(value.trim());
  } catch {
    throw new ChannelConfigError('/url', `${hint} (port 1-65535)`);
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') {
    throw new ChannelConfigError('/url', `scheme must be smtp: or smtps:, not ${url.protocol}`);
  }
  if (url.hostname === '') throw new ChannelConfigError('/url', `has no host; ${hint}`);
  if (url.port === '0') throw new ChannelConfigError('/url', 'port must be between 1 and 65535');
  try {
    decodeURIComponent(url.username + url.password);
  } catch {
    throw new ChannelConfigError('/url', 'user or password has a malformed %-escape');
  }
  for (const [key, raw] of url.searchParams) {
    const type = QUERY_OPTIONS[key];
    if (type === undefined) {
      throw new ChannelConfigError(
        '/url',
        `unknown option ${key}; known: ${Object.keys(QUERY_OPTIONS).join(', ')}`,
      );
    }
    if (type === 'boolean' && raw !== 'true' && raw !== 'false') {
      throw new ChannelConfigError('/url', `option ${key} must be true or false`);
    }
    if (type === 'count' && !/^[1-9]\d{0,6}$/.test(raw)) {
      throw new ChannelConfigError('/url', `option ${key} must be a positive whole number`);
    }
  }
  return url.href;
}

function checkMailbox(value: unknown, path: string): string {
  const parsed = typeof value === 'string' ? addressparser(value) : [];
  const address = parsed.length === 1 ? (parsed[0]?.address ?? '') : '';
  if (typeof value !== 'string' || !EMAIL.test(address)) {
    throw new ChannelConfigError(
      path,
      'must be one email address: "Name <name@example.com>" or "name@example.com"',
    );
  }
  return value.trim();
}

/**
 * With `allow` (the `allowList(config.outboundAllow)`), connections to the relay pass the SSRF guard like every
 * other outbound call: nodemailer is handed sockets opened to allowed addresses only.
 */
function createSmtpProvider(
  config: SmtpConfig,
  options: ProviderOptions & { allow?: BlockList },
): Provider<string> {
  const { allow, timeoutMs } = options;
  const transporter = nodemailer.createTransport({
    ...transportOptions(config.url, timeoutMs),
    ...(allow === undefined ? {} : { getSocket: guardedSockets(allow, timeoutMs) }),
  });
  const domain = senderDomain(config.from);
  return {
    async send(message, address) {
      const started = performance.now();
      const elapsed = () => Math.round(performance.now() - started);
      if (!EMAIL.test(address)) {
        return result({
          outcome: 'failed',
          latencyMs: elapsed(),
          error: 'EADDRESS: not an email address',
          addressGone: true,
        });
      }
      try {
        const info = await transporter.sendMail({
          ...compose(message, domain),
          from: config.from,
          replyTo: config.reply_to,
          to: address,
          signal: AbortSignal.timeout(options.timeoutMs),
        });
        return result({
          outcome: 'succeeded',
          latencyMs: elapsed(),
          statusCode: replyCode(info.response),
          response: truncate(info.response),
          providerMessageId: info.messageId,
        });
      } catch (error) {
        return classify(error as NodemailerError, elapsed(), options.timeoutMs);
      }
    },
    async close() {
      transporter.close();
    },
  };
}

/** Nodemailer's `getSocket`: each connection to the relay opened through the SSRF guard. */
function guardedSockets(allow: BlockList, timeoutMs: number): NonNullable<SMTPPoolOptions['getSocket']> {
  return (target, callback) =>
    connectSafely(
      { host: String(target.host), port: Number(target.port) },
      allow,
      timeoutMs,
      (error, socket) => callback(error, socket && { connection: socket }),
    );
}

/** Nodemailer pool options from a validated URL: a few reused connections, every wait bounded by the timeout. */
function transportOptions(href: string, timeoutMs: number): SMTPPoolOptions & { pool: true } {
  const url = new URL(href);
  const secure = url.protocol === 'smtps:';
  const options: SMTPPoolOptions & { pool: true } = {
    pool: true,
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port === '' ? (secure ? 465 : 587) : Number(url.port),
    secure,
    maxConnections: 5,
    // Herald retries on its own schedule; one requeue covers a pooled connection the server closed meanwhile.
    maxRequeues: 1,
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    // An idle pooled connection must not die at each quiet moment; the abort signal bounds a stalled send.
    socketTimeout: Math.max(timeoutMs, 60_000),
    disableFileAccess: true,
    disableUrlAccess: true,
  };
  if (url.username !== '' || url.password !== '') {
    options.auth = { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
  }
  const tls: Record<string, string | boolean> = {};
  const extra: Record<string, string | number | boolean> = {};
  for (const [key, raw] of url.searchParams) {
    const type = QUERY_OPTIONS[key];
    const value = type === 'boolean' ? raw === 'true' : type === 'count' ? Number(raw) : raw;
    if (key.startsWith('tls.') && typeof value !== 'number') tls[key.slice(4)] = value;
    else extra[key] = value;
  }
  if (Object.keys(tls).length > 0) options.tls = tls;
  return Object.assign(options, extra);
}

function senderDomain(from: string): string {
  const address = addressparser(from)[0]?.address ?? '';
  return address.slice(address.lastIndexOf('@') + 1) || 'herald.invalid';
}

/** The message part of the mail: subject, both bodies and the headers Herald sets. */
function compose(message: Message, domain: string): SendMailOptions {
  const links = linksOf(message);
  const headers: Record<string, string | { prepared: boolean; value: string }> = {
    'Auto-Submitted': 'auto-generated',
    'X-Herald-Message-ID': message.id,
    'X-Herald-Event-ID': message.eventId,
  };
  if (message.locale !== null && /^[A-Za-z0-9-]{1,35}$/.test(message.locale)) {
    headers['Content-Language'] = message.locale;
  }
  const unsubscribe = httpUrl(message.unsubscribeUrl);
  if (unsubscribe !== null) {
    // RFC 8058 one-click. `prepared` keeps nodemailer from folding a long URL over several lines, which
    // receivers verifying DKIM over the header have been seen to reject (nodemailer#1654).
    headers['List-Unsubscribe'] = { prepared: true, value: `<${unsubscribe}>` };
    headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
  }
  return {
    // The same Message-ID on every attempt and provider lets mailboxes drop a duplicate of a retried send.
    messageId: `<${message.id.replace(/[^\w.-]/g, '_')}.herald@${domain}>`,
    subject: message.title,
    text: textBody(message.text, links),
    html: message.html === null ? htmlDocument(message, links) : withHtmlLinks(message.html, links),
    headers,
  };
}

interface Link {
  label: string;
  url: string;
}

function linksOf(message: Message): Link[] {
  const links: Link[] = [];
  const record = httpUrl(message.url);
  if (record !== null) links.push({ label: 'Open', url: record });
  for (const action of message.actions) {
    const url = httpUrl(action.url);
    if (url !== null) links.push({ label: action.label, url });
  }
  return links;
}

function httpUrl(value: string | null): string | null {
  if (value === null || !URL.canParse(value)) return null;
  const url = new URL(value);
  return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
}

function textBody(text: string, links: Link[]): string {
  const missing = links.filter((link) => !text.includes(link.url));
  if (missing.length === 0) return text;
  return `${text}\n\n${missing.map((link) => `${link.label}: ${link.url}`).join('\n')}\n`;
}

function htmlDocument(message: Message, links: Link[]): string {
  const paragraphs = message.text
    .split(/\n{2,}/)
    .filter((paragraph) => paragraph.trim() !== '')
    .map((paragraph) => `<p>${escapeHtml(paragraph).replace(/\n/g, '<br>')}</p>`);
  const lang = message.locale === null ? '' : ` lang="${escapeHtml(message.locale)}"`;
  return [
    `<!doctype html>\n<html${lang}><head><meta charset="utf-8"><title>${escapeHtml(message.title)}</title></head>`,
    '<body>',
    ...paragraphs,
    ...links.map(linkParagraph),
    '</body></html>',
    '',
  ].join('\n');
}

function withHtmlLinks(html: string, links: Link[]): string {
  const written = (url: string) =>
    [url, escapeHtml(url), url.replaceAll('&', '&amp;')].some((u) => html.includes(u));
  const missing = links.filter((link) => !written(link.url));
  if (missing.length === 0) return html;
  const block = missing.map(linkParagraph).join('\n');
  const end = html.toLowerCase().lastIndexOf('</body>');
  return end === -1 ? `${html}\n${block}\n` : `${html.slice(0, end)}${block}\n${html.slice(end)}`;
}

function linkParagraph(link: Link): string {
  return `<p><a href="${escapeHtml(link.url)}">${escapeHtml(link.label)}</a></p>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function replyCode(response: string | undefined): number | null {
  const match = /^([2-5]\d\d)\b/.exec(response ?? '');
  return match === null ? null : Number(match[1]);
}

// Commands whose replies judge the message or its recipient; a failure anywhere else (connecting, the
// greeting, EHLO, AUTH, TLS) is the relay's.
const ENVELOPE_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);
// RFC 5321 §4.2.2: 550 mailbox unavailable, 551 user not local, 553 mailbox name not allowed.
const GONE_REPLIES = new Set([550, 551, 553]);

/**
 * Maps a nodemailer error to a result. Permanent (5xx) rejections of RCPT TO or DATA fail the message, a
 * rejected mailbox is also gone unless the enhanced status says policy (5.7.x, RFC 3463); the relay refusing
 * our sender is its fault, not the message's. 4xx replies are retried; connection, TLS, authentication and
 * protocol errors are retried as provider faults.
 */
function classify(error: NodemailerError, latencyMs: number, timeoutMs: number): SendResult {
  const reply = error.responseCode ?? null;
  const command = error.command ?? '';
  const base = {
    latencyMs,
    statusCode: reply,
    response: truncate(error.response ?? null),
    error: truncate(`${error.originalCode ?? error.code ?? 'ERROR'}: ${error.message}`, 500),
  };
  if (error.code === 'EABORT') {
    return result({
      ...base,
      outcome: 'retry',
      providerFault: true,
      error: `ETIMEDOUT: no answer in ${timeoutMs} ms`,
    });
  }
  if (reply === null) {
    const messageFault = error.code === 'EMESSAGE' || (error.code === 'EENVELOPE' && command === 'API');
    return result({ ...base, outcome: messageFault ? 'failed' : 'retry', providerFault: !messageFault });
  }
  if (!ENVELOPE_COMMANDS.has(command)) return result({ ...base, outcome: 'retry', providerFault: true });
  if (reply >= 500 && reply !== 503) {
    if (command === 'MAIL FROM' && reply !== 552)
      return result({ ...base, outcome: 'retry', providerFault: true });
    const policy = /^\d{3}[ -]5\.7\.\d/.test(error.response ?? '');
    const addressGone = command === 'RCPT TO' && GONE_REPLIES.has(reply) && !policy;
    return result({ ...base, outcome: 'failed', addressGone });
  }
  const providerFault = reply === 421 || reply === 503 || command === 'MAIL FROM';
  return result({ ...base, outcome: 'retry', providerFault });
}
