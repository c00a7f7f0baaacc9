import type { EventRow } from '../db/tables.ts';

/*
 * A source may close its event (src/actions/close.ts) before the router gets to it. What routing then does:
 * - resolved or cancelled (closed for good): nobody is notified and no escalation starts; there is nothing
 *   left to act on, and a notification would only arrive already out of date.
 * - acknowledged: someone took it, but it is still open, so the recipients are notified (they can see it and
 *   it can still be resolved or answered), but it does not escalate: acknowledging stops an escalation.
 * Webhook endpoints get the event either way: they follow what happened, not who should act on it.
 */

/** How an event closed before it was routed, as the routing decision records it; undefined when it is open. */
export interface ClosedAtRouting {
  resolution: string;
  by: string | null;
  notified: boolean;
  escalated: false;
}

export function closedAtRouting(event: EventRow): ClosedAtRouting | undefined {
  if (event.resolution === null) return undefined;
  return {
    resolution: event.resolution,
    by: event.resolved_by,
    notified: event.resolution === 'acknowledged',
    escalated: false,
  };
}
