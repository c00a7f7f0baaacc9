import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

/** A request the peer got; `json` is undefined when the body was not JSON. */
export interface ChatRecord {
  /** Path and query. */
  url: string;
  json: unknown;
  /** What the peer answered. */
  status: number;
}

/** One answer forced on the next request, whatever it holds. */
export interface ChatReply {
  status: number;
  body?: string;
  headers?: Record<string, string>;
}

/**
 * A local stand-in for Slack incoming webhooks and Teams Workflows webhooks, on 127.0.0.1.
 *
 * Slack (`/services/T…/B…/token`): 200 `ok`; 400 `invalid_payload` when the body is not JSON or has neither
 * `text` nor `blocks`; 400 `invalid_blocks` when a block breaks a Block Kit limit; 410 `channel_is_archived`
 * after `archive(url)`; 404 `no_service` for any other path.
 *
 * Teams (`/workflows/<id>/triggers/manual/paths/invoke?…&sig=…`): 202 with an empty body; 401
 * `DirectApiAuthorizationRequired` without the right `sig`; 404 `WorkflowNotFound` for an unknown or deleted
 * workflow; 400 `InvalidRequestContent` unless the body is a `message` with an Adaptive Card attachment.
 */
export interface ChatPeer {
  /** `http://127.0.0.1:<port>`. */
  readonly origin: string;
  /** Every request, in order. */
  readonly records: ChatRecord[];
  /** A new Slack webhook URL that answers `ok`. */
  slackWebhook(): string;
  /** A new Teams Workflows webhook URL that answers 202. */
  teamsWebhook(): string;
  /** Archives the Slack channel of `url` (410 `channel_is_archived`) or deletes the workflow (404). */
  archive(url: string): void;
  /** Answers for the next requests, one each, in order, before any check. */
  replyNext(...replies: ChatReply[]): void;
  /** The next request gets no answer (until the peer closes): for timeouts. */
  stall(): void;
  /** Resolves once `count` requests have arrived; returns them all. */
  waitFor(count: number): Promise<ChatRecord[]>;
  close(): Promise<void>;
}

// docs.slack.dev reference/block-kit limits the peer enforces, like Slack does with `invalid_blocks`.
function slackBlocksValid(blocks: unknown[]): boolean {
  for (const block of blocks as Record<string, any>[]) {
    if (block?.type === 'header' && !(block.text?.text?.length <= 150)) return false;
    if (block?.type === 'section' && !(block.text?.text?.length <= 3000 && block.text.text.length > 0))
      return false;
    if (block?.type === 'actions') {
      const elements = block.elements as Record<string, any>[];
      if (!Array.isArray(elements) || elements.length === 0 || elements.length > 25) return false;
      for (const e of elements) {
        if (!(e.text?.text?.length <= 75) || !(String(e.action_id ?? '').length <= 255)) return false;
        if (e.url !== undefined && !(e.url.length <= 3000)) return false;
      }
    }
  }
  return true;
}

function slackAnswer(json: any): [number, string] {
  if (typeof json !== 'object' || json === null) return [400, 'invalid_payload'];
  const hasText = typeof json.text === 'string' && json.text !== '';
  const hasBlocks = Array.isArray(json.blocks) && json.blocks.length > 0;
  if (!hasText && !hasBlocks) return [400, 'invalid_payload'];
  if (hasBlocks && !slackBlocksValid(json.blocks)) return [400, 'invalid_blocks'];
  return [200, 'ok'];
}

function teamsValid(json: any): boolean {
  const attachment = Array.isArray(json?.attachments) ? json.attachments[0] : undefined;
  return (
    json?.type === 'message' &&
    attachment?.contentType === 'application/vnd.microsoft.card.adaptive' &&
    attachment.content?.type === 'AdaptiveCard' &&
    Array.isArray(attachment.content.body)
  );
}

function workflowError(code: string, message: string): string {
  return JSON.stringify({ error: { code, message } });
}

/** Starts the peer; it is closed when the test ends. */
export async function startChatPeer(t: TestContext): Promise<ChatPeer> {
  const slack = new Map<string, 'live' | 'archived'>();
  const workflows = new Map<string, { sig: string; live: boolean }>();
  const records: ChatRecord[] = [];
  const replies: ChatReply[] = [];
  const waiters: { count: number; resolve: (records: ChatRecord[]) => void }[] = [];
  let stallNext = false;

  const answer = (res: ServerResponse, url: string, json: unknown, reply: ChatReply) => {
    records.push({ url, json, status: reply.status });
    res.writeHead(reply.status, { 'content-type': 'text/plain; charset=utf-8', ...reply.headers });
    res.end(reply.body ?? '');
    for (const waiter of waiters.filter((w) => records.length >= w.count)) {
      waiters.splice(waiters.indexOf(waiter), 1);
      waiter.resolve(records);
    }
  };

  const route = (path: string, query: URLSearchParams, json: unknown): ChatReply => {
    if (path.startsWith('/services/')) {
      const state = slack.get(path);
      if (state === undefined) return { status: 404, body: 'no_service' };
      if (state === 'archived') return { status: 410, body: 'channel_is_archived' };
      const [status, body] = slackAnswer(json);
      return { status, body };
    }
    const match = /^\/workflows\/([0-9a-f]{32})\/triggers\/manual\/paths\/invoke$/.exec(path);
    const workflow = match ? workflows.get(match[1]!) : undefined;
    const asJson = { 'content-type': 'application/json' };
    if (workflow === undefined || !workflow.live) {
      const body = workflowError('WorkflowNotFound', 'The workflow could not be found.');
      return { status: 404, body, headers: asJson };
    }
    if (query.get('sig') !== workflow.sig) {
      const body = workflowError('DirectApiAuthorizationRequired', 'The request must be authenticated.');
      return { status: 401, body, headers: asJson };
    }
    if (!teamsValid(json)) {
      const body = workflowError(
        'InvalidRequestContent',
        'The request content is not a message with an adaptive card.',
      );
      return { status: 400, body, headers: asJson };
    }
    return { status: 202 };
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const url = req.url ?? '/';
      let json: unknown;
      try {
        json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {}
      if (stallNext) {
        stallNext = false;
        return;
      }
      const parsed = new URL(url, 'http://peer');
      answer(res, url, json, replies.shift() ?? route(parsed.pathname, parsed.searchParams, json));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  let closed = false;
  const peer: ChatPeer = {
    origin,
    records,
    slackWebhook() {
      const id = () => randomBytes(5).toString('hex').toUpperCase();
      const path = `/services/T${id()}/B${id()}/${randomBytes(12).toString('base64url')}`;
      slack.set(path, 'live');
      return origin + path;
    },
    teamsWebhook() {
      const id = randomUUID().replaceAll('-', '');
      const sig = randomBytes(32).toString('base64url');
      workflows.set(id, { sig, live: true });
      const query = `api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=${sig}`;
      return `${origin}/workflows/${id}/triggers/manual/paths/invoke?${query}`;
    },
    archive(url) {
      const path = new URL(url).pathname;
      if (slack.has(path)) slack.set(path, 'archived');
      const workflow = /^\/workflows\/([0-9a-f]{32})\//.exec(path)?.[1];
      if (workflow !== undefined && workflows.has(workflow)) workflows.get(workflow)!.live = false;
    },
    replyNext(...next) {
      replies.push(...next);
    },
    stall() {
      stallNext = true;
    },
    waitFor(count) {
      if (records.length >= count) return Promise.resolve(records);
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
