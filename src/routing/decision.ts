import { chunks } from '../db/bulk.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import { presentEvent } from '../events/events.present.ts';
import { loadOptOuts } from '../preferences/preferences.repo.ts';
import { subscriptionMatches, subscriptionsForBatch } from '../subscriptions/subscriptions.repo.ts';
import {
  type QueueRoute,
  type Recipient,
  type Route,
  resolveRecipients,
  type Unresolved,
} from './recipients.ts';
import { compileRules, matchRules, newMatchState, type RuleOutcome } from './rules.match.ts';
import type { Rule } from './rules.repo.ts';

/*
 * The one routing decision. The router applies it to each claimed batch and writes what it says; the explain
 * API runs the very same function on an event that is not stored and shows it. Nothing here writes.
 */

/** Why noise control (dedup, throttle, inhibition, silence, quiet hours) holds a notification back. */
export interface Hold {
  reason: string;
  /** When it will be let through (quiet hours), if it will. */
  until?: number;
  detail?: string;
}

/** What one recipient gets, and why not more. */
export interface RecipientPlan {
  userId: string;
  /** The routes that reached them: `recipients`, `rule:<id>...`, `subscription:<id>`. */
  via: string[];
  /** Channel keys the routes asked for (`email`, or `push>email` for a fallback chain). */
  requested: string[];
  /** The channels the notification lists: the inbox and every channel of the chains kept. */
  channels: string[];
  /** The sends to make: each chain is tried in turn, first to last. */
  chains: string[][];
  /** Channels dropped, with the reason (a preference turned off). */
  skipped: { channel: string; reason: string }[];
  /** Set by a decision step (noise control): no notification is created now, and this says why. */
  held?: Hold;
}

/** The routing decision for one event. */
export interface EventDecision {
  event: EventRow;
  /** Every enabled rule, in order, with what it made of the event. */
  rules: RuleOutcome[];
  /** The subscriptions that follow the event. */
  subscriptions: string[];
  recipients: Map<string, RecipientPlan>;
  /** The shared queues it reaches: one item each (src/queues), whatever channels the route named. */
  queues: QueueRoute[];
  unresolved: Unresolved[];
}

/**
 * A step that refines a batch's decisions after recipients and channels are known, by setting `held` on
 * recipients (noise control). With `dryRun` (explain) it must not write anything.
 */
export type DecisionStep = (
  db: Db,
  decisions: ReadonlyMap<string, EventDecision>,
  context: { now: number; dryRun: boolean },
) => Promise<void>;

/**
 * Decides a batch: which rules each event matches (in order, stopping unless a rule continues), which
 * subscriptions follow it, who that reaches, and on which channels given their preferences. The rules are
 * compiled once per condition text and kept; the directory, subscriptions and preferences are read once per batch.
 */
export async function decideBatch(
  db: Db,
  events: readonly EventRow[],
  rules: readonly Rule[],
): Promise<Map<string, EventDecision>> {
  const compiled = compileRules(rules);
  const subscriptions = await subscriptionsForBatch(db, events);
  const state = newMatchState();
  const matched: { event: EventRow; outcomes: RuleOutcome[]; followed: string[]; routes: Route[] }[] = [];
  for (const event of events) {
    let input: unknown;
    const outcomes = await matchRules(compiled, event, () => (input ??= presentEvent(event)), state);
    const routes: Route[] = [];
    if (event.recipients !== null) {
      const explicit = JSON.parse(event.recipients) as { users?: string[]; groups?: string[] };
      routes.push({ kind: 'explicit', users: explicit.users ?? [], groups: explicit.groups ?? [] });
    }
    outcomes.forEach((outcome, i) => {
      if (outcome.matched) routes.push({ kind: 'rule', rule: compiled[i]!.rule });
    });
    const followed = subscriptions.filter((s) => subscriptionMatches(s, event));
    for (const s of followed) {
      routes.push({ kind: 'subscription', id: s.id, userId: s.userId, channels: s.channels });
    }
    matched.push({ event, outcomes, followed: followed.map((s) => s.id), routes });
  }
  const resolved = await resolveRecipients(db, matched);
  const userIds = new Set<string>();
  for (const r of resolved.values()) for (const id of r.recipients.keys()) userIds.add(id);
  const optedOut = await optOutsOf(db, [...userIds]);

  const decisions = new Map<string, EventDecision>();
  for (const { event, outcomes, followed } of matched) {
    const { recipients, queues, unresolved } = resolved.get(event.id)!;
    const plans = new Map<string, RecipientPlan>();
    for (const recipient of recipients.values())
      plans.set(recipient.userId, planChannels(recipient, event, optedOut));
    decisions.set(event.id, {
      event,
      rules: outcomes,
      subscriptions: followed,
      recipients: plans,
      queues: [...queues.values()],
      unresolved,
    });
  }
  return decisions;
}

type OptedOut = (userId: string, type: string, channel: string) => boolean;

// Preferences are read in slices so a batch reaching very many people stays inside bound-value limits.
const PREFERENCE_SLICE = 10_000;

async function optOutsOf(db: Db, userIds: string[]): Promise<OptedOut> {
  if (userIds.length <= PREFERENCE_SLICE) return loadOptOuts(db, userIds);
  const bySlice = new Map<string, OptedOut>();
  for (const slice of chunks(userIds, PREFERENCE_SLICE)) {
    const optedOut = await loadOptOuts(db, slice);
    for (const id of slice) bySlice.set(id, optedOut);
  }
  return (userId, type, channel) => bySlice.get(userId)?.(userId, type, channel) ?? false;
}

/**
 * What a recipient gets on which channel: the inbox always; each other channel or fallback chain unless the
 * user turned that channel off for this kind of event (critical events go through regardless). A chain drops
 * the channels turned off and keeps the rest in order.
 */
function planChannels(recipient: Recipient, event: EventRow, optedOut: OptedOut): RecipientPlan {
  const chains: string[][] = [];
  const skipped: { channel: string; reason: string }[] = [];
  const used = new Set<string>(['inapp']);
  for (const key of recipient.channels) {
    if (key === 'inapp') continue;
    const chain = key.split('>').filter((channel) => {
      if (event.severity === 'critical' || !optedOut(recipient.userId, event.type, channel)) return true;
      skipped.push({ channel, reason: 'turned off in preferences' });
      return false;
    });
    if (chain.length === 0 || used.has(chain[0]!)) continue;
    for (const channel of chain) used.add(channel);
    chains.push(chain);
  }
  return {
    userId: recipient.userId,
    via: recipient.via,
    requested: [...recipient.channels].sort(),
    channels: [...used].sort(),
    chains,
    skipped,
  };
}
