import type { Store } from '../db/engine.ts';

// LISTEN/NOTIFY payloads must stay under 8,000 bytes.
const NOTIFY_BYTES = 7_000;

/** Tells inbox streams (on every node) which users have something new, in payloads small enough for NOTIFY. */
export function announceInboxes(store: Store, userIds: Iterable<string>): void {
  let chunk: string[] = [];
  let bytes = 0;
  for (const id of userIds) {
    if (bytes + id.length + 1 > NOTIFY_BYTES && chunk.length > 0) {
      store.notifier.publish('inbox', chunk.join(','));
      chunk = [];
      bytes = 0;
    }
    chunk.push(id);
    bytes += id.length + 1;
  }
  if (chunk.length > 0) store.notifier.publish('inbox', chunk.join(','));
}
