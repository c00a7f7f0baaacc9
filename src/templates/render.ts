import { Liquid, type Template } from 'liquidjs';
import type { Message, MessageAction, Severity } from '../channels/channel.ts';
import type { EventRow, TemplateRow, UserRow } from '../db/tables.ts';
import { presentEvent } from '../events/events.present.ts';
import { matchesAnyType } from '../routing/patterns.ts';

/*
 * Templates are LiquidJS (no code execution, no file access). Text and subjects render as written; HTML
 * escapes every output, so event data cannot inject markup. Dates render in the recipient's timezone and
 * locale with the `localdate` filter: `{{ event.due_at | localdate }}`, `{{ event.time | localdate: "date" }}`.
 */

const options = { strictFilters: true, cache: false, ownPropertyOnly: true } as const;
const textEngine = new Liquid(options);
const htmlEngine = new Liquid({ ...options, outputEscape: 'escape' });

const STYLES: Record<string, Intl.DateTimeFormatOptions> = {
  datetime: { dateStyle: 'medium', timeStyle: 'short' },
  date: { dateStyle: 'medium' },
  time: { timeStyle: 'short' },
  long: { dateStyle: 'full', timeStyle: 'long' },
};

for (const engine of [textEngine, htmlEngine]) {
  engine.registerFilter('localdate', function (this: { context: { environments: unknown } }, value, style) {
    const date = value instanceof Date ? value : new Date(String(value));
    if (value === null || value === undefined || Number.isNaN(date.getTime())) return '';
    const env = this.context.environments as { recipient?: { locale?: string; timezone?: string } };
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

type Parsed = ReturnType<typeof parseTemplate>;
const parsedCache = new Map<string, Parsed>();

function parsed(row: TemplateRow): Parsed {
  const key = `${row.id}\u0000${row.updated_at}`;
  let found = parsedCache.get(key);
  if (found === undefined) {
    found = parseTemplate(row);
    if (parsedCache.size > 500) parsedCache.clear();
    parsedCache.set(key, found);
  }
  return found;
}

/** The template for an event type, channel and locale: locale, then its language, then the default. */
export function chooseTemplate(
  templates: readonly TemplateRow[],
  type: string,
  channel: string,
  locale: string | null,
): TemplateRow | undefined {
  const fitting = templates.filter(
    (t) => (t.channel === channel || t.channel === '*') && matchesAnyType(JSON.parse(t.types), type),
  );
  const chain = [...new Set([locale, locale?.split('-')[0], ''].filter((l): l is string => l != null))];
  for (const wanted of chain) {
    const inLocale = fitting.filter((t) => t.locale.toLowerCase() === wanted.toLowerCase());
    const exact = inLocale.find((t) => t.channel === channel) ?? inLocale[0];
    if (exact !== undefined) return exact;
  }
  return undefined;
}

/** What a message is rendered from. */
export interface RenderInput {
  event: EventRow;
  notification: { id: string; title: string; summary: string | null; url: string | null } | null;
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
    notification: notification ?? { id: null, title: event.title ?? event.type, summary: event.summary },
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
  const title = notification?.title ?? event.title ?? event.summary ?? event.type;
  const summary = notification?.summary ?? event.summary;
  const url = notification?.url ?? event.url;
  const actions: MessageAction[] = (
    event.actions === null ? [] : (JSON.parse(event.actions) as { id: string; label: string }[])
  ).map((a) => ({ id: a.id, label: a.label, url: null }));
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
        html: template.html === null ? base.html : render(htmlEngine, template.html),
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
