import { Liquid, Tag, type Template } from 'liquidjs';
import { actionsOf } from '../actions/policy.ts';
import type { Message, MessageAction, Severity } from '../channels/channel.ts';
import type { EventRow, TemplateRow, UserRow } from '../db/tables.ts';
import { presentEvent } from '../events/events.present.ts';
import { eventTitle } from '../notifications/notifications.repo.ts';
import { matchesAnyType } from '../routing/patterns.ts';

/*
 * Templates are LiquidJS (no code execution, no file access). Text and subjects render as written; HTML
 * escapes every output, so event data cannot inject markup (the `raw` filter opts one output out). Dates render
 * in the recipient's timezone and locale with the `localdate` filter: `{{ event.due_at | localdate }}`,
 * `{{ event.time | localdate: "date" }}` (styles: datetime, date, time, long).
 */

const options = {
  strictFilters: true,
  cache: false,
  ownPropertyOnly: true,
  // An empty in-memory file system: LiquidJS would otherwise read `{% include "x" %}` from the working directory.
  templates: {},
  // A template runs for every message: bound the time and memory one render may take (a huge range, a loop).
  renderLimit: 250,
  memoryLimit: 16_000_000,
} as const;
const textEngine = new Liquid(options);
const htmlEngine = new Liquid({ ...options, outputEscape: 'escape' });

const STYLES: Record<string, Intl.DateTimeFormatOptions> = {
  datetime: { dateStyle: 'medium', timeStyle: 'short' },
  date: { dateStyle: 'medium' },
  time: { timeStyle: 'short' },
  long: { dateStyle: 'full', timeStyle: 'long' },
};

/** A tag refused when a template is parsed: there are no partials or layouts to include. */
function refusedTag(name: string) {
  return class extends Tag {
    constructor(...args: ConstructorParameters<typeof Tag>) {
      super(...args);
      throw new Error(`{% ${name} %} is not available: templates cannot include other files`);
    }
    *render(): Generator<never, void> {}
  };
}

for (const engine of [textEngine, htmlEngine]) {
  for (const name of ['include', 'render', 'layout']) engine.registerTag(name, refusedTag(name));
  engine.registerFilter('localdate', function (this: { context: { environments: unknown } }, value, style) {
    const date = value instanceof Date ? value : new Date(String(value));
    if (value === null || value === undefined || Number.isNaN(date.getTime())) return '';
    const env = this.context.environments as {
      recipient?: { locale?: string | null; timezone?: string | null } | null;
    };
    const format = STYLES[String(style ?? 'datetime')] ?? STYLES['datetime'];
    const locale = env.recipient?.locale ?? 'en';
    const timeZone = env.recipient?.timezone ?? 'UTC';
    return new Intl.DateTimeFormat(locale, { ...format, timeZone }).format(date);
  });
}

/** Parses a template's parts; throws a LiquidJS error (with line and column) when one is malformed. */
export function parseTemplate(parts: { subject: string | null; text: string; html: string | null }) {
  return {
    subject: parts.subject === null ? null : textEngine.parse(parts.subject),
    text: textEngine.parse(parts.text),
    html: parts.html === null ? null : htmlEngine.parse(parts.html),
  };
}

/** The parts of a template that do not parse, each with LiquidJS's message (it names the line and column). */
export function templateProblems(parts: {
  subject: string | null;
  text: string;
  html: string | null;
}): { part: 'subject' | 'text' | 'html'; message: string }[] {
  const problems: { part: 'subject' | 'text' | 'html'; message: string }[] = [];
  for (const part of ['subject', 'text', 'html'] as const) {
    const source = parts[part];
    if (source === null) continue;
    try {
      (part === 'html' ? htmlEngine : textEngine).parse(source);
    } catch (error) {
      problems.push({ part, message: (error as Error).message.slice(0, 500) });
    }
  }
  return problems;
}

type Parsed = ReturnType<typeof parseTemplate>;

// Parsed templates by id, reused while the template's text is unchanged (a replaced template parses again).
const parsedCache = new Map<string, { source: TemplateRow; parsed: Parsed }>();

function parsed(row: TemplateRow): Parsed {
  const hit = parsedCache.get(row.id);
  if (hit !== undefined && sameParts(hit.source, row)) return hit.parsed;
  const fresh = parseTemplate(row);
  if (parsedCache.size >= 500) parsedCache.clear();
  parsedCache.set(row.id, { source: row, parsed: fresh });
  return fresh;
}

function sameParts(a: TemplateRow, b: TemplateRow): boolean {
  return a.text === b.text && a.subject === b.subject && a.html === b.html;
}

/**
 * The locales tried for a recipient, most specific first (RFC 4647 lookup): `de-CH` → `de` → the default (`''`);
 * `zh-Hant-TW` → `zh-Hant` → `zh` → `''`. A single-letter subtag left at the end (an extension) goes too.
 */
export function localeChain(locale: string | null): string[] {
  const chain: string[] = [];
  const parts = locale === null || locale === '' ? [] : locale.toLowerCase().split('-');
  while (parts.length > 0) {
    chain.push(parts.join('-'));
    parts.pop();
    if (parts.length > 0 && parts.at(-1)!.length === 1) parts.pop();
  }
  chain.push('');
  return chain;
}

/**
 * The template for an event type, channel and locale. Locales go from the recipient's own to its language to the
 * default (see {@link localeChain}); within a locale, a template for the channel beats one for `*`. When several
 * still fit (the same locale and channel, overlapping types), the one with the smallest id wins.
 */
export function chooseTemplate(
  templates: readonly TemplateRow[],
  type: string,
  channel: string,
  locale: string | null,
): TemplateRow | undefined {
  const fitting = templates
    .filter((t) => (t.channel === channel || t.channel === '*') && matchesAnyType(JSON.parse(t.types), type))
    .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const wanted of localeChain(locale)) {
    const inLocale = fitting.filter((t) => t.locale.toLowerCase() === wanted);
    const chosen = inLocale.find((t) => t.channel === channel) ?? inLocale[0];
    if (chosen !== undefined) return chosen;
  }
  return undefined;
}

/** What a message is rendered from. */
export interface RenderInput {
  event: EventRow;
  /** `actionable` 0: it offers none of the event's actions (see NotificationsTable). */
  notification: {
    id: string;
    title: string;
    summary: string | null;
    url: string | null;
    actionable?: number;
  } | null;
  recipient: Pick<UserRow, 'id' | 'name' | 'email' | 'locale' | 'timezone' | 'attributes'> | null;
  channel: string;
  template: TemplateRow | undefined;
  unsubscribeUrl: string | null;
  publicUrl: string;
}

/** The variables a template sees. */
export function templateScope(input: RenderInput) {
  const { event, notification, recipient } = input;
  return {
    event: presentEvent(event),
    notification: notification ?? {
      id: null,
      title: eventTitle(event),
      summary: event.summary,
      url: event.url,
    },
    recipient:
      recipient === null
        ? null
        : {
            id: recipient.id,
            name: recipient.name,
            email: recipient.email,
            locale: recipient.locale,
            timezone: recipient.timezone,
            attributes: JSON.parse(recipient.attributes) as unknown,
          },
    channel: input.channel,
    herald_url: input.publicUrl,
  };
}

/**
 * Renders a message. A template that fails at send time (a filter throwing on unexpected data) does not lose
 * the message: it falls back to the plain rendering of title and summary, and `templateError` says why.
 */
export function renderMessage(input: RenderInput): { message: Message; templateError: string | null } {
  const { event, notification } = input;
  const title = notification?.title ?? eventTitle(event);
  const summary = notification?.summary ?? event.summary;
  const url = notification?.url ?? event.url;
  const offered = notification?.actionable === 0 ? [] : actionsOf(event);
  const actions: MessageAction[] = offered.map((a) => ({ id: a.id, label: a.label, url: null }));
  const base: Message = {
    id: `${notification?.id ?? event.id}.${input.channel}`,
    eventId: event.id,
    notificationId: notification?.id ?? null,
    type: event.type,
    severity: event.severity as Severity,
    title,
    text: plainText(summary, url),
    html: input.channel === 'email' ? plainHtml(title, summary, url) : null,
    url,
    actions,
    locale: input.recipient?.locale ?? null,
    unsubscribeUrl: input.unsubscribeUrl,
    expiresAt: null,
    data: { event_type: event.type, ...(event.subject === null ? {} : { subject: event.subject }) },
  };
  if (input.template === undefined) return { message: base, templateError: null };
  try {
    const template = parsed(input.template);
    const scope = templateScope(input);
    const render = (engine: Liquid, t: Template[]) => engine.renderSync(t, scope) as string;
    return {
      message: {
        ...base,
        title: template.subject === null ? title : render(textEngine, template.subject).trim() || title,
        text: render(textEngine, template.text),
        // Without an HTML part the email provider makes an escaped HTML body from the rendered text.
        html: template.html === null ? null : render(htmlEngine, template.html),
      },
      templateError: null,
    };
  } catch (error) {
    return { message: base, templateError: (error as Error).message.slice(0, 500) };
  }
}

function plainText(summary: string | null, url: string | null): string {
  return [summary, url].filter((part) => part !== null && part !== '').join('\n\n');
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

function plainHtml(title: string, summary: string | null, url: string | null): string {
  const parts = [`<h2>${escapeHtml(title)}</h2>`];
  if (summary !== null && summary !== '') parts.push(`<p>${escapeHtml(summary)}</p>`);
  if (url !== null) parts.push(`<p><a href="${escapeHtml(url)}">Open</a></p>`);
  return `<!doctype html><html><body>${parts.join('')}</body></html>`;
}
