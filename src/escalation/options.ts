import { type Static, Type } from 'typebox';
import type { FieldProblem } from '../errors.ts';
import { DURATION_PATTERN, parseDuration } from '../noise/time.ts';

/*
 * Escalation options, shared by rules and native events: the policy to escalate with, reminders before the
 * deadline (`due_at`) and task aging (escalate after this long without an answer, for events without one).
 */

/** An escalation policy id. */
export const PolicyId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.\\-]+$' });

/** A reminder offset before the deadline: a minus sign and a duration (`-1d`, `-2h`). */
export const OFFSET_PATTERN = `^-${DURATION_PATTERN.slice(1)}`;

/** The escalation fields a rule or a native event may carry. */
export const EscalationFields = {
  escalation_policy: Type.Optional(
    Type.String({
      ...PolicyId,
      description: 'The escalation policy for events it routes (see `/escalation-policies`)',
    }),
  ),
  reminders: Type.Optional(
    Type.Array(Type.String({ pattern: OFFSET_PATTERN, maxLength: 12 }), {
      maxItems: 10,
      uniqueItems: true,
      description:
        'Reminders before `due_at` (`["-1d", "-2h"]`) to the current recipients; at the deadline an ' +
        'overdue notice, then the escalation policy starts',
    }),
  ),
  aging: Type.Optional(
    Type.String({
      pattern: DURATION_PATTERN,
      maxLength: 12,
      description:
        'For events without `due_at`: start the escalation policy after this long without an answer',
    }),
  ),
};

/** The escalation options of a rule or an event, as given. */
export interface EscalationOptions {
  escalation_policy?: string;
  reminders?: string[];
  aging?: string;
}

const EscalationObject = Type.Object(EscalationFields);
export type EscalationFieldsBody = Static<typeof EscalationObject>;

/** The options present in a body (rule or event); undefined when it names none. */
export function pickEscalation(body: EscalationFieldsBody): EscalationOptions | undefined {
  const options: EscalationOptions = {};
  if (body.escalation_policy !== undefined) options.escalation_policy = body.escalation_policy;
  if (body.reminders !== undefined && body.reminders.length > 0) options.reminders = body.reminders;
  if (body.aging !== undefined) options.aging = body.aging;
  return Object.keys(options).length > 0 ? options : undefined;
}

const MAX_MS = 366 * 86_400_000;

/** Problems the schema cannot see: durations beyond a year. */
export function checkEscalation(options: EscalationOptions, prefix: string): FieldProblem[] {
  const problems: FieldProblem[] = [];
  (options.reminders ?? []).forEach((r, i) => {
    if ((parseDuration(r.slice(1)) ?? Infinity) > MAX_MS) {
      problems.push({ field: `${prefix}reminders.${i}`, message: 'must be at most 366 days' });
    }
  });
  if (options.aging !== undefined && (parseDuration(options.aging) ?? Infinity) > MAX_MS) {
    problems.push({ field: `${prefix}aging`, message: 'must be at most 366 days' });
  }
  return problems;
}

/** Reminder offsets in ms before the deadline, largest first. */
export function reminderOffsets(options: EscalationOptions): number[] {
  return (options.reminders ?? [])
    .map((r) => parseDuration(r.slice(1)))
    .filter((ms): ms is number => ms !== undefined)
    .sort((a, b) => b - a);
}
