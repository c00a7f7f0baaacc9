/*
 * Every timer of an event's escalation has an id starting with `esc:<event id>:`, so stopping the
 * escalation deletes them all with one range, whatever is pending (a reminder, the deadline, a level).
 */

/** The id of one of an event's escalation timers; `step` names it (`level:0:1`, `reminder:0`, `due`). */
export function escalationTimerId(eventId: string, step: string): string {
  return `esc:${eventId}:${step}`;
}

/** The id range `[from, to)` holding every escalation timer of an event. */
export function escalationTimerRange(eventId: string): { from: string; to: string } {
  // ';' sorts right after ':', so the range is exactly the ids with the `esc:<event id>:` prefix.
  return { from: `esc:${eventId}:`, to: `esc:${eventId};` };
}
