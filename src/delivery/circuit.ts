import type { CircuitColumns } from '../db/tables.ts';

/** When a circuit opens, how long it stays open, and when it gives up. */
export interface BreakerSettings {
  /** Consecutive failures that pause an endpoint or provider. */
  threshold: number;
  /** The first pause, in ms; each failed probe doubles it, up to `maxPauseMs`. */
  pauseMs: number;
  maxPauseMs: number;
  /** Failing without a success for this long disables it for good (ms). */
  disableAfterMs: number;
}

export type Transition = 'paused' | 'recovered' | 'disabled' | null;

/**
 * The circuit after one more outcome. Closed while failures stay under the threshold; then open (paused) for
 * a while; once the pause is over the dispatcher sends one probe (half-open): a success closes the circuit, a
 * failure pauses it again for twice as long. A run of failures longer than `disableAfterMs` disables.
 * Only transitions an operator should hear about are reported: the first pause, recovery after one, disabling.
 */
export function nextCircuit(
  state: CircuitColumns,
  success: boolean,
  now: number,
  settings: BreakerSettings,
): { state: CircuitColumns; transition: Transition } {
  if (success) {
    const wasPaused = state.paused_until !== null;
    return {
      state: { failures: 0, failing_since: null, paused_until: null },
      transition: wasPaused ? 'recovered' : null,
    };
  }
  // A failure while the pause runs is a request that was already under way when the circuit opened, not a
  // failed probe: counting it would double the pause once per request in flight.
  if (state.paused_until !== null && state.paused_until > now) return { state, transition: null };
  const failures = state.failures + 1;
  const failingSince = state.failing_since ?? now;
  if (now - failingSince >= settings.disableAfterMs && failures >= settings.threshold) {
    return { state: { failures, failing_since: failingSince, paused_until: null }, transition: 'disabled' };
  }
  if (failures < settings.threshold) {
    return {
      state: { failures, failing_since: failingSince, paused_until: state.paused_until },
      transition: null,
    };
  }
  const pause = Math.min(settings.pauseMs * 2 ** (failures - settings.threshold), settings.maxPauseMs);
  return {
    state: { failures, failing_since: failingSince, paused_until: now + pause },
    transition: state.paused_until === null ? 'paused' : null,
  };
}
