import { CHANNEL_CONCURRENCY, USER_CHANNELS } from '../channels/registry.ts';
import type { Db } from '../db/engine.ts';

/** What the dispatcher must know about a lane before claiming for it. */
export interface LaneRules {
  /** Most requests in flight at once on this node. */
  concurrency: number;
  /** Requests per second, when limited. */
  rateLimit: number | null;
  ordered: boolean;
  /** Nothing is sent before this (the circuit is open). */
  pausedUntil: number | null;
  /** The pause is over but the circuit has not closed yet: one probe at a time. */
  probing: boolean;
}

/**
 * The lanes that are not plain: endpoints that are ordered, rate-limited or paused, and user channels, whose
 * limits are fixed and which pause only when every provider of the channel is paused. Read before each claim;
 * a plain endpoint is absent and gets the default concurrency.
 */
export async function loadLaneRules(
  db: Db,
  defaultConcurrency: number,
  now: number,
): Promise<Map<string, LaneRules>> {
  const [endpoints, providers] = await Promise.all([
    db
      .selectFrom('endpoints')
      .select(['id', 'ordered', 'rate_limit', 'paused_until'])
      .where('status', '=', 'enabled')
      .where((eb) =>
        eb.or([eb('ordered', '=', 1), eb('rate_limit', 'is not', null), eb('paused_until', 'is not', null)]),
      )
      .execute(),
    db.selectFrom('providers').select(['channel', 'paused_until']).where('enabled', '=', 1).execute(),
  ]);
  const lanes = new Map<string, LaneRules>();
  for (const e of endpoints) {
    lanes.set(e.id, {
      concurrency: e.ordered === 1 ? 1 : defaultConcurrency,
      rateLimit: e.rate_limit,
      ordered: e.ordered === 1,
      pausedUntil: e.paused_until !== null && e.paused_until > now ? e.paused_until : null,
      probing: e.paused_until !== null && e.paused_until <= now,
    });
  }
  for (const channel of USER_CHANNELS) {
    const own = providers.filter((p) => p.channel === channel);
    const allPaused = own.length > 0 && own.every((p) => p.paused_until !== null && p.paused_until > now);
    lanes.set(channel, {
      concurrency: CHANNEL_CONCURRENCY[channel],
      rateLimit: null,
      ordered: false,
      pausedUntil: allPaused ? Math.min(...own.map((p) => p.paused_until!)) : null,
      probing: false,
    });
  }
  return lanes;
}
