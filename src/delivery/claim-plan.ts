import type { Job } from './jobs.ts';
import type { LaneRules } from './lanes.repo.ts';

/** A lane as one dispatcher sees it: what it holds, and what it may take. */
export interface LaneState {
  inFlight: number;
  /** When a send of this lane last finished (`performance.now()`): how we tell a busy lane from a stuck one. */
  lastDoneAt: number;
  /** Claimed, waiting for a free slot (or a rate-limit token) of this lane. */
  queue: Job[];
  rules: LaneRules;
  /** Rate limit: when the next request may start. */
  nextStartAt: number;
  timer: NodeJS.Timeout | undefined;
}

/** A claim takes up to this many times a lane's concurrency, so the next round is in hand when a slot frees. */
export const AHEAD = 4;
/** A lane with every slot busy and no send finished for this long is treated as slow. */
const STUCK_MS = 50;

/** The rules of a lane that has none of its own: a plain endpoint, at the given concurrency. */
export function plainLane(concurrency: number): LaneRules {
  return { concurrency, rateLimit: null, ordered: false, pausedUntil: null, probing: false };
}

/** What the next claim asks for, lane by lane. */
export interface ClaimPlan {
  /** Lanes that may take other than the default (AHEAD times the endpoint concurrency), and how many. */
  roomFor: Map<string, number>;
  /** Lanes the claim over all lanes leaves alone: full, paused, or ordered (claimed by their head). */
  exclude: string[];
  /** Ordered endpoints that hold nothing: their oldest pending delivery may be claimed. */
  orderedHeads: string[];
  /** Lanes in work with room (not ordered, not write-backs), to claim for by name, and how many. */
  targeted: [string, number][];
  /** Lanes holding work (in flight or queued). */
  workingLanes: number;
  /** Whether any lane in work has room. */
  workingWithRoom: boolean;
  /** The room of the lanes in work, together. */
  workingRoom: number;
}

/**
 * Plans a claim from what each lane holds: a lane with a free slot may take up to AHEAD times its concurrency,
 * less what it holds, and not a handful (a claim costs about the same for 5 rows as for 50); a probing lane
 * takes one when it holds none; a paused lane takes nothing. `now` is `performance.now()`.
 */
export function planClaim(
  lanes: ReadonlyMap<string, LaneState>,
  perEndpoint: number,
  now: number,
): ClaimPlan {
  const plan: ClaimPlan = {
    roomFor: new Map(),
    exclude: [],
    orderedHeads: [],
    targeted: [],
    workingLanes: 0,
    workingWithRoom: false,
    workingRoom: 0,
  };
  for (const [id, lane] of lanes) {
    const rule = lane.rules;
    const held = lane.inFlight + lane.queue.length;
    let room = wantsMore(lane, now) ? AHEAD * rule.concurrency - held : 0;
    if (room < rule.concurrency / 2) room = 0;
    if (rule.probing) room = held === 0 ? 1 : 0;
    if (rule.pausedUntil !== null) room = 0;
    if (held > 0) {
      plan.workingLanes++;
      if (room > 0) plan.workingWithRoom = true;
      plan.workingRoom += Math.max(room, 0);
      if (room > 0 && !rule.ordered && !id.startsWith('callback:')) plan.targeted.push([id, room]);
    }
    if (rule.ordered) {
      if (room > 0 && held === 0) plan.orderedHeads.push(id);
      plan.exclude.push(id);
    } else if (room <= 0) plan.exclude.push(id);
    else if (room !== AHEAD * perEndpoint) plan.roomFor.set(id, room);
  }
  return plan;
}

/**
 * Whether to claim more for a lane: while less than one round is queued, unless every slot is taken by sends
 * that have not finished for a while (a slow receiver gets no more than it can take, and leaves the node's
 * capacity to the others).
 */
function wantsMore(lane: LaneState, now: number): boolean {
  if (lane.queue.length >= lane.rules.concurrency) return false;
  return lane.inFlight < lane.rules.concurrency || now - lane.lastDoneAt < STUCK_MS;
}
