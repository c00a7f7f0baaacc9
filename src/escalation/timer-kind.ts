/** The timer kind of every escalation step. */
export const ESCALATION_TIMER = 'escalation.step';

/** What an escalation timer does when it fires (its payload, besides `event_id`). */
export type EscalationTimer =
  | { step: 'level'; level: number; round: number }
  | { step: 'reminder'; index: number }
  | { step: 'due' };
