import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { waitFor } from './helpers.ts';

/** A user's open inbox stream: the frames so far, and `next()` for the next one in turn, its data parsed. */
export interface InboxStream {
  frames: EventSourceMessage[];
  next(): Promise<EventSourceMessage & { body: Record<string, unknown> }>;
}

/** Opens `GET /v1/me/stream` with a user token, read with eventsource-parser; closed when the test ends. */
export async function openInboxStream(t: TestContext, base: string, token: string): Promise<InboxStream> {
  const controller = new AbortController();
  const response = await fetch(`${base}/v1/me/stream`, {
    headers: { authorization: `Bearer ${token}` },
    signal: controller.signal,
  });
  assert.equal(response.status, 200);
  const frames: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (frame) => frames.push(frame) });
  const ended = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body!) parser.feed(decoder.decode(chunk, { stream: true }));
    } catch {
      // Aborted when the test ends.
    }
  })();
  t.after(async () => {
    controller.abort();
    await ended;
  });
  let read = 0;
  return {
    frames,
    async next() {
      const frame = await waitFor(() => frames[read]);
      read++;
      return { ...frame, body: JSON.parse(frame.data) as Record<string, unknown> };
    },
  };
}
