import { retryAfter } from '../delivery/webhook.ts';
import { type Message, result, type SendResult, truncate } from './channel.ts';
import { type ChatAnswer, chatProvider, clip } from './chat.ts';

/*
 * Slack incoming webhooks: the address is the webhook URL (`https://hooks.slack.com/services/T…/B…/…`), which
 * names the channel and carries its own secret, so the provider needs no configuration. Slack answers 200 `ok`,
 * or an error status with a short plain-text code (`invalid_payload`, `channel_is_archived`, `no_service`).
 * An action with a URL is a link button (it opens the signed link). One without is an interactive button: when
 * the webhook belongs to a Slack app with interactivity pointed at `/v1/integrations/slack/interactions`, the
 * click arrives there as `block_actions` with `action_id` `herald:<action>:<notification or event id>`.
 */

// Block Kit limits (docs.slack.dev reference/block-kit): header text 150, section text 3000, button text 75,
// button url 3000, action_id 255, at most 25 elements in an actions block.
const HEADER_LIMIT = 150;
const SECTION_LIMIT = 3000;
const BUTTON_TEXT_LIMIT = 75;
const BUTTON_URL_LIMIT = 3000;
const ACTION_ID_LIMIT = 255;
const MAX_BUTTONS = 25;

const EMOJI: Record<Message['severity'], string> = {
  info: ':information_source:',
  warning: ':warning:',
  error: ':x:',
  critical: ':rotating_light:',
};

/** Slack's mrkdwn escaping: only `&`, `<` and `>` are control characters. */
function mrkdwn(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
}

/** `text` escaped for mrkdwn in at most `limit` units; the cut falls between characters, never inside `&amp;`. */
function escapeClipped(text: string, limit: number): string {
  const escaped = mrkdwn(text);
  if (escaped.length <= limit) return escaped;
  let out = '';
  for (const char of text) {
    const piece = mrkdwn(char);
    if (out.length + piece.length > limit - 1) break;
    out += piece;
  }
  return `${out}…`;
}

interface Button {
  type: 'button';
  text: { type: 'plain_text'; text: string; emoji: true };
  action_id: string;
  value?: string;
  url?: string;
  style?: 'primary' | 'danger';
}

function buttons(message: Message): Button[] {
  const ref = message.notificationId ?? message.eventId;
  const out: Button[] = [];
  const add = (id: string, label: string, url: string | null, style: Button['style'], value?: string) => {
    // Slack rejects the whole message (invalid_blocks) for one over-long url; leave that button out instead.
    if (url !== null && url.length > BUTTON_URL_LIMIT) return;
    out.push({
      type: 'button',
      text: { type: 'plain_text', text: clip(label || id, BUTTON_TEXT_LIMIT), emoji: true },
      action_id: `herald:${id}:${ref}`.slice(0, ACTION_ID_LIMIT),
      ...(value === undefined ? {} : { value }),
      ...(url === null ? {} : { url }),
      ...(style === undefined ? {} : { style }),
    });
  };
  if (message.url !== null) add('open', 'Open', message.url, 'primary');
  for (const action of message.actions) {
    const style = action.id === 'reject' ? 'danger' : action.id === 'approve' ? 'primary' : undefined;
    add(action.id, action.label, action.url, style, action.id);
  }
  return out.slice(0, MAX_BUTTONS);
}

/**
 * The incoming-webhook payload for a message: `text` is the notification fallback, `blocks` a header (title),
 * a section (text, mrkdwn-escaped), a context line (severity, type, event id) and buttons ("Open", and one per
 * action: a link when it has a URL, interactive otherwise; no actions block when there are none).
 */
export function slackBody(message: Message): object {
  const title = message.title.trim() || message.type;
  const fallback = message.text === '' ? title : `${title} — ${message.text}`;
  const blocks: object[] = [
    { type: 'header', text: { type: 'plain_text', text: clip(title, HEADER_LIMIT), emoji: true } },
  ];
  if (message.text.trim() !== '') {
    blocks.push({
      type: 'section',
      text: { type: 'mrkdwn', text: escapeClipped(message.text, SECTION_LIMIT) },
    });
  }
  const context = `${EMOJI[message.severity]} *${message.severity}* · ${mrkdwn(message.type)} · event ${mrkdwn(message.eventId)}`;
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: clip(context, SECTION_LIMIT) }] });
  const elements = buttons(message);
  if (elements.length > 0) blocks.push({ type: 'actions', elements });
  return { text: escapeClipped(fallback, SECTION_LIMIT), blocks };
}

function classify(answer: ChatAnswer, now: number): SendResult {
  const { status, text, latencyMs } = answer;
  const base = { statusCode: status, latencyMs, response: truncate(text) };
  if (status >= 200 && status < 300) return result({ ...base, outcome: 'succeeded' });
  const code = text.trim();
  const error = code !== '' && code.length <= 200 && !code.startsWith('<') ? code : `HTTP ${status}`;
  if (status === 429) {
    return result({
      ...base,
      outcome: 'retry',
      error,
      retryAfterMs: retryAfter(answer.headers['retry-after'], now),
    });
  }
  if (status >= 500) return result({ ...base, outcome: 'retry', providerFault: true, error });
  // 404 no_service / 410 channel_is_archived: the webhook (or its channel) no longer exists.
  if (status === 404 || status === 410)
    return result({ ...base, outcome: 'failed', addressGone: true, error });
  return result({ ...base, outcome: 'failed', error });
}

/** Slack incoming webhooks with Block Kit (`slack`, channel `chat`); the address is the webhook URL. */
export const slackProvider = chatProvider('slack', slackBody, classify);
