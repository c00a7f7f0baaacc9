import { iso } from '../clock.ts';
import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import type { DecisionStep, Hold } from '../routing/decision.ts';
import { openBuckets } from './buckets.repo.ts';
import {
  type Candidate,
  deferUntil,
  judgeEvent,
  judgeRecipient,
  loadNoiseState,
  type NoiseState,
  rulesOf,
} from './judge.ts';

/*
 * The explain API's view of noise control: why a candidate (event, recipient, channel) would not be sent
 * now, from the same verdicts routing applies, without writing anything.
 */

/**
 * The noise state for explaining (nothing is written): {@link loadNoiseState} plus the open groups, digests
 * and throttle windows the candidates would join, so throttling and the times things wait until are exact.
 */
export async function loadExplainState(
  db: Db,
  events: readonly EventRow[],
  recipients: (eventId: string) => readonly Candidate[],
  now: number,
): Promise<NoiseState> {
  const state = await loadNoiseState(db, events, recipients, now);
  const keys = new Set<string>();
  for (const event of events) {
    for (const { userId, ruleIds } of recipients(event.id)) {
      const verdict = judgeRecipient(state, event, userId, ruleIds, now);
      if ('openKey' in verdict) keys.add(verdict.openKey);
    }
  }
  for (const bucket of await openBuckets(db, [...keys])) {
    state.buckets.set(bucket.open_key!, { due_at: bucket.due_at, count: bucket.count });
  }
  return state;
}

/** Why a candidate (event, recipient, channel) would not be sent now, and until when; see {@link explainNoise}. */
export type NoiseReason =
  | { reason: 'silenced'; silence_id: string; until: number }
  | { reason: 'inhibited'; inhibited_by: string; inhibition_id: string; until: number }
  | { reason: 'deduplicated'; deduplicated_into: string }
  | { reason: 'grouped'; rule_id: string; group: string; until: number }
  | { reason: 'digest'; rule_id: string | null; until: number }
  | { reason: 'throttled'; rule_id: string; max: number; until: number }
  | { reason: 'quiet_hours'; until: number };

/**
 * Why noise control would not send `event` to `userId` on `channel` now (undefined: nothing holds it back).
 * `ruleIds` are the rules that reached the user, in evaluation order ({@link rulesOf} of the recipient's
 * routes). Pure over `state` (from {@link loadNoiseState}); `inapp` is only held by silences, inhibition,
 * deduplication (an update instead of a new item), groups, digests and throttling, never by quiet hours.
 */
export function explainNoise(
  state: NoiseState,
  candidate: { event: EventRow; userId: string; channel: string; ruleIds: readonly string[] },
  now: number,
): NoiseReason | undefined {
  const { event, userId, channel } = candidate;
  const held = judgeEvent(state, event, now);
  if (held?.kind === 'silenced')
    return { reason: 'silenced', silence_id: held.silence_id, until: held.until };
  if (held?.kind === 'inhibited') {
    return {
      reason: 'inhibited',
      inhibited_by: held.by,
      inhibition_id: held.inhibition_id,
      until: held.until,
    };
  }
  const verdict = judgeRecipient(state, event, userId, candidate.ruleIds, now);
  switch (verdict.kind) {
    case 'deduplicated':
      return { reason: 'deduplicated', deduplicated_into: verdict.into };
    case 'grouped':
      return { reason: 'grouped', rule_id: verdict.ruleId, group: verdict.label, until: verdict.dueAt };
    case 'digest':
      return { reason: 'digest', rule_id: verdict.ruleId, until: verdict.dueAt };
    case 'throttle':
      if ((state.buckets.get(verdict.openKey)?.count ?? 0) >= verdict.max) {
        return { reason: 'throttled', rule_id: verdict.ruleId, max: verdict.max, until: verdict.dueAt };
      }
  }
  if (channel === 'inapp') return undefined;
  const until = deferUntil(state, event, userId, now);
  return until === undefined ? undefined : { reason: 'quiet_hours', until };
}

/** A noise reason that holds a whole notification back, as the explain API's `held`. */
export function holdOf(reason: Exclude<NoiseReason, { reason: 'quiet_hours' }>): Hold {
  switch (reason.reason) {
    case 'silenced':
      return { reason: 'silenced', until: reason.until, detail: `silence ${reason.silence_id}` };
    case 'inhibited':
      return {
        reason: 'inhibited',
        until: reason.until,
        detail: `parent event ${reason.inhibited_by} (inhibition ${reason.inhibition_id}) is open`,
      };
    case 'deduplicated':
      return { reason: 'deduplicated', detail: `updates notification ${reason.deduplicated_into}` };
    case 'grouped':
      return {
        reason: 'grouped',
        until: reason.until,
        detail: `group "${reason.group}" of rule ${reason.rule_id}, sent as one notification`,
      };
    case 'digest':
      return {
        reason: 'digest',
        until: reason.until,
        detail: reason.rule_id === null ? 'the user’s digest' : `digest of rule ${reason.rule_id}`,
      };
    case 'throttled':
      return {
        reason: 'throttled',
        until: reason.until,
        detail: `rule ${reason.rule_id} sends at most ${reason.max} in its window; the rest as one summary`,
      };
  }
}

/**
 * Noise control as a decision step for the explain API. A recipient noise control would hold back now
 * (silence, inhibition, deduplication, group, digest, throttle) gets `held`; one whose quiet hours defer
 * email, push and SMS keeps being notified (the inbox gets it now) and each deferred channel is listed in
 * `skipped` as "deferred by quiet hours until ...". It only reads, whatever `dryRun` says: the router applies
 * noise control with `applyNoise` (src/noise/apply.ts), from the same verdicts.
 */
export const explainNoiseStep: DecisionStep = async (db, decisions, { now }) => {
  const events = [...decisions.values()].map((d) => d.event);
  const candidates = (eventId: string) =>
    [...(decisions.get(eventId)?.recipients.values() ?? [])].map((plan) => ({
      userId: plan.userId,
      ruleIds: rulesOf(plan.via),
    }));
  const state = await loadExplainState(db, events, candidates, now);
  for (const { event, recipients } of decisions.values()) {
    for (const plan of recipients.values()) {
      const candidate = { event, userId: plan.userId, ruleIds: rulesOf(plan.via) };
      const reason = explainNoise(state, { ...candidate, channel: 'inapp' }, now);
      if (reason !== undefined && reason.reason !== 'quiet_hours') {
        plan.held = holdOf(reason);
        continue;
      }
      for (const [channel] of plan.chains) {
        const deferred = explainNoise(state, { ...candidate, channel: channel! }, now);
        if (deferred?.reason === 'quiet_hours') {
          plan.skipped.push({
            channel: channel!,
            reason: `deferred by quiet hours until ${iso(deferred.until)}`,
          });
        }
      }
    }
  }
};
