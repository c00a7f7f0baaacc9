import type { AuditEntry } from '../audit/audit.repo.ts';

// Lists on a decision name at most this many recipients (as the routing summary does); counts stay exact.
const LISTED = 200;

/**
 * What noise control did to each event of a batch, for its routing decision (`routing.noise` on
 * `GET /v1/events/{id}`): `silenced_by`, `inhibited_by` (an event id), `deduplicated_into`, `grouped`,
 * `digest`, `throttled` and `deferred` (quiet hours) per recipient, and the inhibitions an event opened or
 * the parents it resolved.
 */
export class NoiseReport {
  readonly #byEvent = new Map<string, Record<string, unknown>>();

  #of(eventId: string): Record<string, unknown> {
    let entry = this.#byEvent.get(eventId);
    if (entry === undefined) {
      entry = {};
      this.#byEvent.set(eventId, entry);
    }
    return entry;
  }

  /** Sets a single value (`silenced_by`). */
  set(eventId: string, key: string, value: unknown): void {
    this.#of(eventId)[key] = value;
  }

  /** Adds a plain value to a list (`resolved`: parent event ids). */
  note(eventId: string, key: string, value: string): void {
    const entry = this.#of(eventId);
    const list = (entry[key] as string[] | undefined) ?? [];
    entry[key] = list;
    if (!list.includes(value)) list.push(value);
  }

  /** Adds a per-recipient item to a list, counting beyond what is listed (`<key>_count`). */
  add(eventId: string, key: string, item: Record<string, unknown>): void {
    const entry = this.#of(eventId);
    const list = (entry[key] as unknown[] | undefined) ?? [];
    entry[key] = list;
    const count = ((entry[`${key}_count`] as number | undefined) ?? 0) + 1;
    entry[`${key}_count`] = count;
    if (list.length < LISTED) list.push(item);
  }

  /** Adds each event's section to its `event.routed` audit entry. */
  attach(audit: readonly AuditEntry[]): void {
    if (this.#byEvent.size === 0) return;
    for (const entry of audit) {
      if (entry.action !== 'event.routed') continue;
      const noise = this.#byEvent.get(entry.subject_id);
      if (noise === undefined) continue;
      entry.data = { ...(entry.data as Record<string, unknown> | undefined), noise };
    }
  }
}
