import type { EventRow } from '../db/tables.ts';
import { matchesAnyType, typePattern } from './patterns.ts';
import { compileCondition, conditionHolds } from './rules.condition.ts';
import type { Rule } from './rules.repo.ts';

/** A plain condition of a rule the event failed. */
export type Mismatch = 'type' | 'source' | 'severity' | 'subject';

/** Why a rule did not apply to an event: the first of its conditions that failed, or an earlier rule. */
export type SkipReason = Mismatch | 'condition_false' | 'condition_error' | 'stopped';

/** What one rule made of one event. */
export type RuleOutcome =
  | { rule: string; matched: true }
  | { rule: string; matched: false; reason: Mismatch | 'condition_false' }
  | { rule: string; matched: false; reason: 'condition_error'; error: string }
  | { rule: string; matched: false; reason: 'stopped'; by: string };

/** A rule ready to be tried: its subject patterns and condition compiled once. */
export interface CompiledRule {
  rule: Rule;
  /** Its outcome for an event of another type, shared by all such events (outcomes are never changed). */
  typeMiss: RuleOutcome;
  subjects: RegExp[] | undefined;
  condition: ReturnType<typeof compileCondition> | undefined;
  /** Set when the condition cannot be compiled (it was checked when saved; a newer JSONata may disagree). */
  broken: string | undefined;
}

/** What matching remembers across the events of one batch. */
export interface MatchState {
  /** Rules whose condition ran out of time in this batch, with the error: not evaluated again in it. */
  tripped: Map<string, string>;
  /** Event type → which rules' type patterns it matches (a batch repeats a few types many times). */
  byType: Map<string, boolean[]>;
  /** Rule that stopped matching → the outcomes of the rules after it, shared by the events it stopped. */
  stopped: Map<string, RuleOutcome[]>;
}

/** A fresh state for a batch. */
export const newMatchState = (): MatchState => ({
  tripped: new Map(),
  byType: new Map(),
  stopped: new Map(),
});

/**
 * Prepares rules for a batch, keeping their order. Cheap: conditions are compiled once per text (and cached
 * across batches), subject patterns once per pattern.
 */
export function compileRules(rules: readonly Rule[]): CompiledRule[] {
  return rules.map(compile);
}

const subjectPatterns = new Map<string, RegExp>();

function subjectPattern(pattern: string): RegExp {
  let regex = subjectPatterns.get(pattern);
  if (regex === undefined) {
    if (subjectPatterns.size >= 10_000) subjectPatterns.clear();
    regex = typePattern(pattern);
    subjectPatterns.set(pattern, regex);
  }
  return regex;
}

function compile(rule: Rule): CompiledRule {
  const base = {
    rule,
    typeMiss: { rule: rule.id, matched: false, reason: 'type' } as const,
    subjects: rule.match.subjects?.map(subjectPattern),
  };
  if (rule.match.condition === undefined) return { ...base, condition: undefined, broken: undefined };
  try {
    return { ...base, condition: compileCondition(rule.match.condition), broken: undefined };
  } catch (error) {
    const broken = `the condition does not compile: ${(error as { message?: string }).message ?? error}`;
    return { ...base, condition: undefined, broken };
  }
}

/** The first of a rule's conditions besides type (source, severity, subject) the event fails, if any. */
function mismatch(compiled: CompiledRule, event: EventRow): Mismatch | undefined {
  const { match } = compiled.rule;
  if (match.sources && match.sources.length > 0 && !match.sources.includes(event.source_id)) return 'source';
  if (match.severities && match.severities.length > 0 && !match.severities.includes(event.severity))
    return 'severity';
  const subject = event.subject;
  if (
    compiled.subjects !== undefined &&
    (subject === null || !compiled.subjects.some((p) => p.test(subject)))
  )
    return 'subject';
  return undefined;
}

/**
 * Tries the rules on an event in order. A matching rule stops the rules after it unless it says `continue`;
 * those are reported as stopped, not tried. A condition that throws skips its rule (reported with the error)
 * and the rules after it are still tried. `input` gives the event as conditions see it (built once, lazily).
 */
export async function matchRules(
  rules: readonly CompiledRule[],
  event: EventRow,
  input: () => unknown,
  state: MatchState,
): Promise<RuleOutcome[]> {
  let types = state.byType.get(event.type);
  if (types === undefined) {
    types = rules.map((r) => matchesAnyType(r.rule.match.types, event.type));
    state.byType.set(event.type, types);
  }
  const outcomes: RuleOutcome[] = new Array(rules.length);
  let stopped: RuleOutcome[] | undefined;
  for (let i = 0; i < rules.length; i++) {
    const compiled = rules[i]!;
    const rule = compiled.rule.id;
    if (stopped !== undefined) {
      outcomes[i] = stopped[i]!;
      continue;
    }
    if (!types[i]) {
      outcomes[i] = compiled.typeMiss;
      continue;
    }
    const reason = mismatch(compiled, event);
    if (reason !== undefined) {
      outcomes[i] = { rule, matched: false, reason };
      continue;
    }
    const failure = await evaluate(compiled, input, state);
    if (failure !== undefined) {
      outcomes[i] = { rule, matched: false, ...failure };
      continue;
    }
    outcomes[i] = { rule, matched: true };
    if (!compiled.rule.continue) stopped = stoppedOutcomes(rules, rule, state);
  }
  return outcomes;
}

function stoppedOutcomes(rules: readonly CompiledRule[], by: string, state: MatchState): RuleOutcome[] {
  let outcomes = state.stopped.get(by);
  if (outcomes === undefined) {
    outcomes = rules.map((r) => ({ rule: r.rule.id, matched: false, reason: 'stopped', by }) as const);
    state.stopped.set(by, outcomes);
  }
  return outcomes;
}

type ConditionFailure = { reason: 'condition_false' } | { reason: 'condition_error'; error: string };

async function evaluate(
  compiled: CompiledRule,
  input: () => unknown,
  state: MatchState,
): Promise<ConditionFailure | undefined> {
  if (compiled.broken !== undefined) return { reason: 'condition_error', error: compiled.broken };
  if (compiled.condition === undefined) return undefined;
  const tripped = state.tripped.get(compiled.rule.id);
  if (tripped !== undefined) {
    return {
      reason: 'condition_error',
      error: `not evaluated: on an earlier event of this batch, ${tripped}`,
    };
  }
  try {
    return (await conditionHolds(compiled.condition, input())) ? undefined : { reason: 'condition_false' };
  } catch (error) {
    const e = error as Error & { timedOut?: boolean };
    // One slow condition must not hold a whole batch: once it runs out of time, it is skipped for the rest.
    if (e.timedOut) state.tripped.set(compiled.rule.id, e.message);
    return { reason: 'condition_error', error: e.message };
  }
}
