import type { EventRow } from '../db/tables.ts';
import type { Action } from '../events/events.schema.ts';

/** How many responses close an event. */
export type Policy = { kind: 'first' } | { kind: 'all' } | { kind: 'quorum'; n: number };

/** The event's response policy (stored as JSON; null is `first`). */
export function policyOf(event: Pick<EventRow, 'response_policy'>): Policy {
  if (event.response_policy === null) return { kind: 'first' };
  const value = JSON.parse(event.response_policy) as unknown;
  if (value === 'all') return { kind: 'all' };
  if (value !== null && typeof value === 'object' && 'quorum' in value) {
    return { kind: 'quorum', n: Number(value.quorum) };
  }
  return { kind: 'first' };
}

/** The policy as the API shows it. */
export function presentPolicy(policy: Policy): 'first' | 'all' | { quorum: number } {
  return policy.kind === 'quorum' ? { quorum: policy.n } : policy.kind;
}

/**
 * Whether `responses` responses out of `recipients` notifications close the event: the first does under
 * `first`; every recipient's under `all`; `n` under a quorum (or every recipient's, when there are fewer).
 */
export function closes(policy: Policy, responses: number, recipients: number): boolean {
  switch (policy.kind) {
    case 'first':
      return responses >= 1;
    case 'all':
      return responses >= recipients;
    case 'quorum':
      return responses >= Math.min(policy.n, recipients);
  }
}

/** The actions an event offers. */
export function actionsOf(event: Pick<EventRow, 'actions'>): Action[] {
  return event.actions === null ? [] : (JSON.parse(event.actions) as Action[]);
}
