import { retryAfter } from '../delivery/webhook.ts';
import { type Message, result, type SendResult, truncate } from './channel.ts';
import { type ChatAnswer, chatProvider, clip } from './chat.ts';

/*
 * Microsoft Teams through a Workflows (Power Automate) webhook, "Post to a channel when a webhook request is
 * received": the address is the workflow's URL, signed by its `sig` query parameter. The body is a `message`
 * holding one Adaptive Card. Webhooks cannot carry Action.Submit (no round trip reaches Herald), so every button
 * is an Action.OpenUrl to the action's signed link. Workflows answers 202 with an empty body; errors are
 * `{"error": {"code", "message"}}`.
 */

// Teams refuses messages over about 28 KB; these keep a card well under it.
const TITLE_LIMIT = 250;
const TEXT_LIMIT = 8000;
// Legacy Office 365 connectors never answer 429: they say so in a 200 body (msteams-docs, connectors-using.md).
const LEGACY_THROTTLED = 'Microsoft Teams endpoint returned HTTP error 429';

interface OpenUrl {
  type: 'Action.OpenUrl';
  title: string;
  url: string;
  style?: 'positive' | 'destructive';
}

function actions(message: Message): OpenUrl[] {
  const out: OpenUrl[] = [];
  if (message.url !== null) out.push({ type: 'Action.OpenUrl', title: 'Open', url: message.url });
  for (const action of message.actions) {
    if (action.url === null) continue;
    const style = action.id === 'reject' ? 'destructive' : action.id === 'approve' ? 'positive' : undefined;
    out.push({
      type: 'Action.OpenUrl',
      title: action.label || action.id,
      url: action.url,
      ...(style === undefined ? {} : { style }),
    });
  }
  return out;
}

/**
 * The Workflows webhook payload for a message: one Adaptive Card 1.4 with the title (in the attention color for
 * errors), the text, a fact set (severity, type, event id) and an Action.OpenUrl for "Open" and for each action
 * that has a URL (no `actions` when there are none).
 */
export function teamsBody(message: Message): object {
  const alarming = message.severity === 'error' || message.severity === 'critical';
  const body: object[] = [
    {
      type: 'TextBlock',
      text: clip(message.title.trim() || message.type, TITLE_LIMIT),
      weight: 'bolder',
      size: 'medium',
      wrap: true,
      ...(alarming ? { color: 'attention' } : {}),
    },
  ];
  if (message.text.trim() !== '')
    body.push({ type: 'TextBlock', text: clip(message.text, TEXT_LIMIT), wrap: true });
  body.push({
    type: 'FactSet',
    facts: [
      { title: 'Severity', value: message.severity },
      { title: 'Type', value: message.type },
      { title: 'Event', value: message.eventId },
    ],
  });
  const buttons = actions(message);
  return {
    type: 'message',
    attachments: [
      {
        contentType: 'application/vnd.microsoft.card.adaptive',
        contentUrl: null,
        content: {
          $schema: 'http://adaptivecards.io/schemas/adaptive-card.json',
          type: 'AdaptiveCard',
          version: '1.4',
          body,
          ...(buttons.length > 0 ? { actions: buttons } : {}),
        },
      },
    ],
  };
}

/** `code: message` from a Workflows error body, else the plain text, else the status. */
function reasonOf(text: string, status: number): string {
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const { code, message } = body.error ?? {};
    if (typeof code === 'string')
      return typeof message === 'string' ? `${code}: ${message}`.slice(0, 500) : code;
  } catch {}
  const plain = text.trim();
  return plain !== '' && plain.length <= 200 && !plain.startsWith('<') ? plain : `HTTP ${status}`;
}

function classify(answer: ChatAnswer, now: number): SendResult {
  const { status, text, latencyMs } = answer;
  const base = { statusCode: status, latencyMs, response: truncate(text) };
  if (status >= 200 && status < 300) {
    if (text.includes(LEGACY_THROTTLED))
      return result({ ...base, outcome: 'retry', error: LEGACY_THROTTLED });
    return result({ ...base, outcome: 'succeeded' });
  }
  const error = reasonOf(text, status);
  if (status === 408 || status === 429) {
    return result({
      ...base,
      outcome: 'retry',
      error,
      retryAfterMs: retryAfter(answer.headers['retry-after'], now),
    });
  }
  if (status >= 500) return result({ ...base, outcome: 'retry', providerFault: true, error });
  // The workflow was deleted (or its URL mistyped): nothing will ever answer there again.
  if (status === 404) return result({ ...base, outcome: 'failed', addressGone: true, error });
  return result({ ...base, outcome: 'failed', error });
}

/** Microsoft Teams through Workflows webhooks with Adaptive Cards (`teams`, channel `chat`); the address is the URL. */
export const teamsProvider = chatProvider('teams', teamsBody, classify);
