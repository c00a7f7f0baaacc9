import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import { findOpenByDedupKeys } from '../notifications/notifications.repo.ts';
import { matchesAnyType } from '../routing/patterns.ts';
import {
  allInhibitions,
  eventMatches,
  type Inhibition,
  inhibitionKey,
  openParents,
  type Parent,
  resolvedType,
} from './inhibitions.repo.ts';
import { type Cadence, eventData, keyValue, loadRulePolicies, type NoisePolicy } from './options.ts';
import { loadRecipientNoise, loadTimezones, type RecipientNoise } from './settings.repo.ts';
import { activeSilences, type Silence, silenceMatches } from './silences.repo.ts';
import { clockMinutes, nextHour, nextLocalTime, quietUntil } from './time.ts';

/*
 * What noise control decides, as pure functions over a state loaded once per batch: routing applies the
 * verdicts (apply.ts), and the explain API asks the same functions why a candidate would not be sent.
 */

/** Everything noise control reads for a batch of events and their recipients. */
export interface NoiseState {
  silences: Silence[];
  inhibitions: Inhibition[];
  /** Open parents, the earliest per `inhibition id + key`. */
  parents: Map<string, Parent>;
  /** Noise options of the rules that have some, by rule id. */
  policies: Map<string, NoisePolicy>;
  /** Recipients with quiet hours or a digest preference. */
  settings: Map<string, RecipientNoise>;
  /** Time zones of recipients whose rules send digests. */
  timezones: Map<string, string | null>;
  /** Open (unread or read) notifications by {@link dedupSlot}: their ids. */
  open: Map<string, string>;
  /** Open buckets by open key: when each flushes next and how full it is. */
  buckets: Map<string, { due_at: number; count: number }>;
}

/** The event data parsed once per event. */
const dataCache = new WeakMap<EventRow, unknown>();
export function dataOf(event: EventRow): unknown {
  if (!dataCache.has(event)) dataCache.set(event, eventData(event));
  return dataCache.get(event);
}

/** Where an event's dedup key is looked for: per source and user. */
export const dedupSlot = (sourceId: string, key: string, userId: string) =>
  `${sourceId}\u0000${key}\u0000${userId}`;

const parentSlot = (inhibitionId: string, key: string) => `${inhibitionId}\u0000${key}`;

/** The rule ids among a recipient's routes (`rule:<id>...`), in evaluation order. */
export function rulesOf(via: readonly string[]): string[] {
  const ids: string[] = [];
  for (const route of via) {
    if (!route.startsWith('rule:')) continue;
    const id = route.slice(5).split(':')[0]!;
    if (!ids.includes(id)) ids.push(id);
  }
  return ids;
}

/** A recipient of an event as noise control sees it: who, and the rules that reached them, in order. */
export interface Candidate {
  userId: string;
  ruleIds: readonly string[];
}

/**
 * Loads the noise state for `events` and their candidates (`recipients`): a handful of queries for the whole
 * batch, and none for what nobody uses (no settings, no dedup keys, no digests).
 */
export async function loadNoiseState(
  db: Db,
  events: readonly EventRow[],
  recipients: (eventId: string) => readonly Candidate[],
  now: number,
): Promise<NoiseState> {
  const [silences, inhibitions, policies] = await Promise.all([
    activeSilences(db, now),
    allInhibitions(db),
    loadRulePolicies(db),
  ]);
  const userIds = new Set<string>();
  const digesters = new Set<string>();
  const dedupKeys = new Set<string>();
  const pairs: { inhibitionId: string; key: string }[] = [];
  for (const event of events) {
    for (const { userId, ruleIds } of recipients(event.id)) {
      userIds.add(userId);
      if (ruleIds.some((id) => policies.get(id)?.digest !== undefined)) digesters.add(userId);
    }
    if (event.dedup_key !== null) dedupKeys.add(event.dedup_key);
    for (const inhibition of inhibitions) {
      if (eventMatches(inhibition.children, event) || resolvedType(event, dataOf(event)) !== undefined) {
        pairs.push({ inhibitionId: inhibition.id, key: inhibitionKey(inhibition, event, dataOf(event)) });
      }
    }
  }
  const [parents, settings, open, timezones] = await Promise.all([
    openParents(db, pairs, now),
    loadRecipientNoise(db, [...userIds]),
    dedupKeys.size === 0 ? [] : findOpenByDedupKeys(db, [...dedupKeys]),
    loadTimezones(db, [...digesters]),
  ]);
  const state: NoiseState = {
    silences,
    inhibitions,
    parents: new Map(),
    policies,
    settings,
    timezones,
    open: new Map(),
    buckets: new Map(),
  };
  for (const parent of parents) addParent(state, parent);
  for (const row of open) {
    if (userIds.has(row.user_id)) {
      state.open.set(dedupSlot(row.source_id, row.dedup_key!, row.user_id), row.id);
    }
  }
  return state;
}

/** Records an open parent (the earliest per key wins). */
export function addParent(state: NoiseState, parent: Parent): void {
  const slot = parentSlot(parent.inhibition_id, parent.key);
  if (!state.parents.has(slot)) state.parents.set(slot, parent);
}

/** Why a whole event notifies nobody. */
export type EventVerdict =
  | { kind: 'silenced'; silence_id: string; until: number }
  | { kind: 'inhibited'; by: string; inhibition_id: string; until: number };

/** The silence or open parent that holds `event` back, if any (a silence first). */
export function judgeEvent(state: NoiseState, event: EventRow, now: number): EventVerdict | undefined {
  for (const silence of state.silences) {
    if (silence.starts_at <= now && now < silence.ends_at && silenceMatches(silence.matchers, event)) {
      return { kind: 'silenced', silence_id: silence.id, until: silence.ends_at };
    }
  }
  for (const inhibition of state.inhibitions) {
    if (!eventMatches(inhibition.children, event)) continue;
    const parent = state.parents.get(
      parentSlot(inhibition.id, inhibitionKey(inhibition, event, dataOf(event))),
    );
    if (parent !== undefined && parent.event_id !== event.id && parent.expires_at > now) {
      return {
        kind: 'inhibited',
        by: parent.event_id,
        inhibition_id: inhibition.id,
        until: parent.expires_at,
      };
    }
  }
  return undefined;
}

/** What an event does to inhibitions: the parents it opens and those it resolves. */
export function inhibitionEffects(state: NoiseState, event: EventRow, now: number) {
  const opens: Parent[] = [];
  const resolves: Parent[] = [];
  const data = dataOf(event);
  const base = resolvedType(event, data);
  for (const inhibition of state.inhibitions) {
    const key = inhibitionKey(inhibition, event, data);
    if (base !== undefined) {
      const parent = state.parents.get(parentSlot(inhibition.id, key));
      if (parent !== undefined && parent.event_type === base) resolves.push(parent);
    } else if (eventMatches(inhibition.parent, event)) {
      opens.push({
        inhibition_id: inhibition.id,
        event_id: event.id,
        event_type: event.type,
        key,
        opened_at: now,
        expires_at: now + inhibition.expires_in,
        resolved_at: null,
        resolved_by: null,
      });
    }
  }
  return { opens, resolves };
}

/** Forgets a resolved parent; a later parent with its key may open again. */
export function removeParent(state: NoiseState, parent: Parent): void {
  state.parents.delete(parentSlot(parent.inhibition_id, parent.key));
}

/** How one recipient's notification of an event is handled. */
export type RecipientVerdict =
  | { kind: 'deduplicated'; into: string }
  | { kind: 'grouped'; ruleId: string; openKey: string; label: string; dueAt: number }
  | { kind: 'digest'; ruleId: string | null; openKey: string; dueAt: number }
  | { kind: 'throttle'; ruleId: string; openKey: string; max: number; dueAt: number }
  | { kind: 'send' };

/**
 * The verdict for `userId`, reached through `ruleIds` (evaluation order): an open notification with the event's
 * dedup key takes the update; else the first of those rules with noise options groups, sends to a digest or
 * throttles (in that order of precedence); else the user's digest preference; else it is sent. Critical
 * events skip digests and throttling.
 */
export function judgeRecipient(
  state: NoiseState,
  event: EventRow,
  userId: string,
  ruleIds: readonly string[],
  now: number,
): RecipientVerdict {
  if (event.dedup_key !== null) {
    const into = state.open.get(dedupSlot(event.source_id, event.dedup_key, userId));
    if (into !== undefined) return { kind: 'deduplicated', into };
  }
  const critical = event.severity === 'critical';
  for (const ruleId of ruleIds) {
    const policy = state.policies.get(ruleId);
    if (policy === undefined) continue;
    if (policy.group) {
      const values = policy.group.by.map((path) => keyValue(event, dataOf(event), path));
      const openKey = JSON.stringify(['group', ruleId, ...values]);
      return {
        kind: 'grouped',
        ruleId,
        openKey,
        // The type is in the title already.
        label: values.filter((v, i) => v !== '' && policy.group!.by[i] !== 'type').join(' / '),
        dueAt: state.buckets.get(openKey)?.due_at ?? now + policy.group.waitMs,
      };
    }
    if (critical) continue;
    if (policy.digest) return digestVerdict(state, userId, ruleId, policy.digest, now);
    if (policy.throttle) {
      const openKey = JSON.stringify(['throttle', ruleId, userId]);
      const dueAt = state.buckets.get(openKey)?.due_at ?? now + policy.throttle.perMs;
      return { kind: 'throttle', ruleId, openKey, max: policy.throttle.max, dueAt };
    }
  }
  const preference = state.settings.get(userId)?.digest;
  if (!critical && preference && matchesAnyType(preference.categories ?? ['*'], event.type)) {
    return digestVerdict(state, userId, null, preference.cadence, now);
  }
  return { kind: 'send' };
}

function digestVerdict(
  state: NoiseState,
  userId: string,
  ruleId: string | null,
  cadence: Cadence,
  now: number,
): RecipientVerdict {
  const name = cadence === 'hourly' ? 'hourly' : `daily@${cadence.daily_at}`;
  const openKey = JSON.stringify(['digest', userId, name]);
  const zone = state.settings.get(userId)?.timezone ?? state.timezones.get(userId) ?? null;
  const dueAt =
    state.buckets.get(openKey)?.due_at ??
    (cadence === 'hourly' ? nextHour(now, zone) : nextLocalTime(now, zone, clockMinutes(cadence.daily_at)));
  return { kind: 'digest', ruleId, openKey, dueAt };
}

/** Until when `userId`'s quiet hours hold back channel deliveries of `event` (critical ones never wait). */
export function deferUntil(
  state: NoiseState,
  event: Pick<EventRow, 'severity'>,
  userId: string,
  now: number,
) {
  if (event.severity === 'critical') return undefined;
  const settings = state.settings.get(userId);
  if (settings?.quiet_hours == null) return undefined;
  return quietUntil(now, settings.timezone, settings.quiet_hours);
}
