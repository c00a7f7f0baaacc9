import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import { presentEvent } from '../events/events.present.ts';
import { queueItemId } from '../queues/queues.repo.ts';
import {
  type DecisionStep,
  decideBatch,
  type EventDecision,
  type Hold,
  type RecipientPlan,
} from './decision.ts';
import { matchesAnyType } from './patterns.ts';
import { enabledEndpoints } from './routing.repo.ts';
import type { RuleOutcome } from './rules.match.ts';
import { listRules, type Rule } from './rules.repo.ts';

/*
 * Routing decisions as people read them: in full for the explain API, and compactly as kept on each routed
 * event (`GET /v1/events/{id}` shows it). Both are views of the same EventDecision.
 */

// The summary kept on an event lists at most this many recipients, rules and problems (counts stay exact).
const LISTED = 200;
// The explain API lists at most this many recipients.
const EXPLAINED_RECIPIENTS = 1000;

const holdOf = (held: Hold | undefined) =>
  held === undefined
    ? {}
    : {
        held: {
          reason: held.reason,
          ...(held.until === undefined ? {} : { until: iso(held.until) }),
          ...(held.detail === undefined ? {} : { detail: held.detail }),
        },
      };

/** Rule outcomes as stored: `error` for a condition that threw, `by` for a rule stopped by an earlier one. */
function compactOutcome(outcome: RuleOutcome) {
  if (outcome.matched) return { rule: outcome.rule };
  if (outcome.reason === 'condition_error')
    return { rule: outcome.rule, reason: outcome.reason, error: outcome.error };
  return { rule: outcome.rule, reason: outcome.reason };
}

/**
 * The routing decision as kept on a routed event. Rules the event's type did not match are counted rather
 * than listed, and so are the rules after one that stopped matching (the explain API lists every rule).
 */
export function routingSummary(decision: EventDecision, endpoints: string[]) {
  const recipients = [...decision.recipients.values()];
  const rules = decision.rules;
  const notable = rules.filter((r) => !r.matched && r.reason !== 'type' && r.reason !== 'stopped');
  const stopped = rules.filter((r) => !r.matched && r.reason === 'stopped');
  return {
    recipient_count: recipients.length,
    recipients: recipients.slice(0, LISTED).map((r) => ({
      user_id: r.userId,
      channels: r.channels,
      via: r.via,
      ...holdOf(r.held),
    })),
    held_count: recipients.filter((r) => r.held !== undefined).length,
    queues: decision.queues.map((q) => ({
      group_id: q.groupId,
      item_id: queueItemId(decision.event.id, q.groupId),
      via: q.via,
    })),
    unresolved: decision.unresolved.slice(0, LISTED),
    unresolved_count: decision.unresolved.length,
    rules_matched: rules.filter((r) => r.matched).map((r) => r.rule),
    rules_skipped: notable.slice(0, LISTED).map(compactOutcome),
    rules_type_mismatch: rules.filter((r) => !r.matched && r.reason === 'type').length,
    stopped_by: stopped[0]?.reason === 'stopped' ? stopped[0].by : null,
    rules_not_tried: stopped.length,
    subscriptions_matched: decision.subscriptions.slice(0, LISTED),
    endpoints,
    channels_skipped: recipients
      .flatMap((r) => r.skipped.map((s) => ({ user_id: r.userId, ...s })))
      .slice(0, LISTED),
  };
}

/**
 * How `event` would be routed now, by the same decision the router makes: every rule (disabled ones too) with
 * whether it matched and why not, every person it would reach with their channels or why not, and the
 * references that lead nowhere. `steps` are decision steps (noise control) run as a dry run. Writes nothing.
 */
export async function explainEvent(
  db: Db,
  event: EventRow,
  now: number,
  steps: readonly DecisionStep[] = [],
) {
  const rules = await listRules(db, { after: undefined, limit: 100_000 });
  const decisions = await decideBatch(
    db,
    [event],
    rules.filter((r) => r.enabled),
  );
  for (const step of steps) await step(db, decisions, { now, dryRun: true });
  const decision = decisions.get(event.id)!;
  const endpoints = (await enabledEndpoints(db)).filter((e) => matchesAnyType(e.types, event.type));
  const outcomes = new Map(decision.rules.map((o) => [o.rule, o]));
  const recipients = [...decision.recipients.values()];
  const {
    id: _id,
    status: _status,
    received_at: _received,
    source_event_id: _external,
    ...shown
  } = presentEvent(event);
  return {
    event: shown,
    rules: rules.map((rule) => explainRule(rule, outcomes.get(rule.id), event)),
    subscriptions_matched: decision.subscriptions,
    recipient_count: recipients.length,
    recipients: recipients.slice(0, EXPLAINED_RECIPIENTS).map(explainRecipient),
    // Nothing is stored, so there is no item yet: each queue would get one shared item.
    queues: decision.queues.map((q) => ({ group_id: q.groupId, item_id: null, via: q.via })),
    unresolved: decision.unresolved.slice(0, EXPLAINED_RECIPIENTS),
    endpoints: endpoints.map((e) => e.id),
  };
}

function explainRecipient(plan: RecipientPlan) {
  return {
    user_id: plan.userId,
    notified: plan.held === undefined,
    channels: plan.channels,
    via: plan.via,
    channels_skipped: plan.skipped,
    ...holdOf(plan.held),
  };
}

function explainRule(rule: Rule, outcome: RuleOutcome | undefined, event: EventRow) {
  const head = { rule: rule.id, name: rule.name, position: rule.position, continue: rule.continue };
  if (outcome === undefined)
    return { ...head, matched: false, reason: 'disabled', detail: 'the rule is disabled' };
  if (outcome.matched) {
    const detail = rule.continue
      ? 'matched; the rules after it are tried too'
      : 'matched; the rules after it are not tried';
    return { ...head, matched: true, detail };
  }
  return { ...head, matched: false, reason: outcome.reason, detail: whyNot(rule, outcome, event) };
}

const quoted = (items: readonly unknown[]) => items.map((i) => JSON.stringify(i)).join(', ');

function whyNot(rule: Rule, outcome: Exclude<RuleOutcome, { matched: true }>, event: EventRow): string {
  const { match } = rule;
  switch (outcome.reason) {
    case 'type':
      return `type "${event.type}" matches none of ${quoted(match.types)}`;
    case 'source':
      return `source "${event.source_id}" is not one of ${quoted(match.sources ?? [])}`;
    case 'severity':
      return `severity "${event.severity}" is not one of ${quoted(match.severities ?? [])}`;
    case 'subject':
      return event.subject === null
        ? 'the event has no subject'
        : `subject "${event.subject}" matches none of ${quoted(match.subjects ?? [])}`;
    case 'condition_false':
      return 'the condition is false for this event';
    case 'condition_error':
      return `the condition failed, so the rule was skipped: ${outcome.error}`;
    case 'stopped':
      return `rule "${outcome.by}" matched before it and does not continue`;
  }
}
