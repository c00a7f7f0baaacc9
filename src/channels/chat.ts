import { performance } from 'node:perf_hooks';
import {
  ChannelConfigError,
  type Message,
  type ProviderKind,
  type ProviderOptions,
  result,
  type SendResult,
} from './channel.ts';
import { noAnswer, post } from './http.ts';

/*
 * What the chat kinds share: an incoming webhook whose URL is the address (it names the channel and carries its
 * own secret), so a kind needs no configuration; Herald POSTs one JSON body in the service's card format and
 * classifies the answer by the service's own rules.
 */

/**
 * A chat kind: `body` renders a message in the service's format, `classify` reads its answer (success,
 * retry, failure, a webhook that is gone).
 */
export function chatProvider(
  kind: string,
  body: (message: Message) => object,
  classify: (answer: ChatAnswer, now: number) => SendResult,
): ProviderKind<Record<string, never>, string> {
  return {
    kind,
    channel: 'chat',
    validate: (config) => emptyConfig(kind, config),
    redact: () => ({}),
    create: (_config, options) => ({
      async send(message, address) {
        const answer = await postChat(address, body(message), options);
        return isAnswer(answer) ? classify(answer, options.now()) : answer;
      },
      async close() {},
    }),
  };
}

/** `text` in at most `limit` UTF-16 units, ending in `…` when cut; never splits a surrogate pair. */
export function clip(text: string, limit: number): string {
  if (text.length <= limit) return text;
  let out = '';
  for (const char of text) {
    if (out.length + char.length > limit - 1) break;
    out += char;
  }
  return `${out}…`;
}

/** What a chat webhook answered. */
export interface ChatAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** The start of the body (at most 2 KiB). */
  text: string;
  latencyMs: number;
}

function networkFailure(error: unknown, timeoutMs: number, latencyMs: number): SendResult {
  const reason = noAnswer(error, timeoutMs);
  // A refused address does not become reachable by retrying; only the allow list can change that.
  if (reason.startsWith('refused:')) return result({ outcome: 'failed', latencyMs, error: reason });
  return result({ outcome: 'retry', latencyMs, providerFault: true, error: reason });
}

/**
 * POSTs `payload` as JSON to a chat webhook through the guarded agent. Returns the answer, or the result when
 * none came (a bad URL and a refused address fail; timeouts and network errors are retried as provider faults).
 */
async function postChat(
  url: string,
  payload: object,
  options: ProviderOptions,
): Promise<ChatAnswer | SendResult> {
  if (!URL.canParse(url) || !/^https?:$/.test(new URL(url).protocol)) {
    return result({ outcome: 'failed', latencyMs: 0, error: 'bad address: not an http(s) webhook URL' });
  }
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const headers = { 'content-type': 'application/json', 'user-agent': 'Herald/1.0' };
    const answer = await post(url, headers, JSON.stringify(payload), options);
    return { ...answer, latencyMs: elapsed() };
  } catch (error) {
    return networkFailure(error, options.timeoutMs, elapsed());
  }
}

/** Whether `postChat` came back with an answer rather than a result. */
function isAnswer(value: ChatAnswer | SendResult): value is ChatAnswer {
  return 'status' in value;
}

/** The configuration of a chat kind, which has none: `{}` or nothing. */
function emptyConfig(kind: string, config: unknown): Record<string, never> {
  if (config === undefined) return {};
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new ChannelConfigError(
      '',
      `${kind} takes no configuration: give {} (the webhook URL is the address)`,
    );
  }
  const [key] = Object.keys(config);
  if (key !== undefined) {
    throw new ChannelConfigError(`/${key}`, `${kind} takes no configuration: the webhook URL is the address`);
  }
  return {};
}
