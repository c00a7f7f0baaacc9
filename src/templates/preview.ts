import { CHAT_KINDS } from '../channels/registry.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow, TemplateRow, UserRow } from '../db/tables.ts';
import { findUser } from '../directory/users.repo.ts';
import { HeraldError, invalid } from '../errors.ts';
import { toTime } from '../http/formats.ts';
import { eventTitle } from '../notifications/notifications.repo.ts';
import { chooseTemplate, type RenderInput, renderMessage } from './render.ts';
import { allTemplates, findTemplate } from './templates.repo.ts';
import { assertParses, canonicalLocale, type PreviewBody, type PreviewResult } from './templates.schema.ts';

/**
 * Renders a message the way delivery would, for a sample event built from the request: with the inline
 * template, the stored one named, or the one delivery would choose. Nothing is stored or sent.
 */
export async function previewMessage(
  db: Db,
  body: PreviewBody,
  options: { now: number; publicUrl: string },
): Promise<PreviewResult> {
  if (body.template !== undefined && body.template_id !== undefined) {
    throw invalid('body.template_id', 'give either template or template_id, not both');
  }
  const stored = body.template_id === undefined ? undefined : await findTemplate(db, body.template_id);
  if (body.template_id !== undefined && stored === undefined) {
    throw unknownReference('templates', body.template_id);
  }
  const channel = body.channel ?? (stored !== undefined && stored.channel !== '*' ? stored.channel : 'email');
  const locale = body.locale === undefined ? undefined : canonicalLocale(body.locale, 'body.locale') || null;
  // Chat messages go to an endpoint's channel, not to a person: delivery renders them without a recipient.
  const chat = CHAT_KINDS.has(channel);
  if (chat && body.user_id !== undefined) {
    throw invalid('body.user_id', `a ${channel} message goes to a channel, not to a user`);
  }
  const user = body.user_id === undefined ? undefined : await findUser(db, body.user_id);
  if (body.user_id !== undefined && user === undefined) throw unknownReference('users', body.user_id);
  const recipient = chat ? null : sampleRecipient(user, locale);
  const wantedLocale = recipient === null ? (locale ?? null) : recipient.locale;

  let template: TemplateRow | undefined = stored;
  if (body.template !== undefined) {
    const parts = {
      subject: body.template.subject ?? null,
      text: body.template.text,
      html: body.template.html ?? null,
    };
    assertParses(parts, 'body.template');
    template = { id: '', types: '[]', channel, locale: '', ...parts, created_at: 0, updated_at: 0 };
  } else if (stored === undefined) {
    template = chooseTemplate(await allTemplates(db), body.event.type, channel, wantedLocale);
  }

  const event = sampleEvent(body.event, options.now);
  const { message, templateError } = renderMessage({
    event,
    notification: chat ? null : sampleNotification(event),
    recipient,
    channel,
    template,
    unsubscribeUrl: null,
    publicUrl: options.publicUrl,
  });
  return {
    template_id: body.template === undefined ? (template?.id ?? null) : null,
    channel,
    locale: wantedLocale,
    subject: message.title,
    text: message.text,
    html: message.html,
    template_error: templateError,
  };
}

function unknownReference(kind: 'users' | 'templates', id: string): HeraldError {
  return new HeraldError('unknown_reference', `The request names unknown ${kind}: "${id}"`, {
    extra: { unknown: { [kind]: [id] } },
  });
}

/** The event a preview renders, shaped like a stored one. */
function sampleEvent(input: PreviewBody['event'], now: number): EventRow {
  return {
    id: 'evt_preview',
    source_id: input.source ?? 'preview',
    external_id: 'evt_preview',
    idempotency_key: null,
    body_hash: '',
    format: 'native',
    type: input.type,
    subject: input.subject ?? null,
    time: input.time === undefined ? now : toTime(input.time, 'body.event.time'),
    severity: input.severity ?? 'info',
    title: input.title ?? null,
    summary: input.summary ?? null,
    url: input.url ?? null,
    due_at: input.due_at === undefined ? null : toTime(input.due_at, 'body.event.due_at'),
    recipients: null,
    actions: input.actions === undefined ? null : JSON.stringify(input.actions),
    dedup_key: null,
    escalation: null,
    data: input.data === undefined ? null : JSON.stringify(input.data),
    extensions: null,
    status: 'routed',
    received_at: now,
    routed_at: now,
    locked_until: 0,
    response_policy: null,
    callback_url: null,
    resolution: null,
    resolved_at: null,
    resolved_by: null,
  };
}

/** The notification routing would make of the event (see the router's `newNotification` call). */
function sampleNotification(event: EventRow): NonNullable<RenderInput['notification']> {
  return {
    id: 'ntf_preview',
    title: eventTitle(event),
    summary: event.summary,
    url: event.url,
  };
}

/** The recipient of a preview: the directory's user, or a placeholder; `locale`, when given, replaces theirs. */
function sampleRecipient(
  user: UserRow | undefined,
  locale: string | null | undefined,
): NonNullable<RenderInput['recipient']> {
  const recipient = user ?? {
    id: 'preview',
    name: 'Preview Recipient',
    email: 'preview@example.com',
    locale: null,
    timezone: null,
    attributes: '{}',
  };
  return locale === undefined ? recipient : { ...recipient, locale };
}
