import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AHEAD, type LaneState, plainLane, planClaim } from '../src/delivery/claim-plan.ts';
import type { Job } from '../src/delivery/jobs.ts';
import type { LaneRules } from '../src/delivery/lanes.repo.ts';

/* How the dispatcher decides, lane by lane, what its next claim asks for (src/delivery/claim-plan.ts). */

const PER_ENDPOINT = 4;
const NOW = 10_000;

function lane(held: { inFlight?: number; queued?: number; lastDoneAt?: number }, rules?: Partial<LaneRules>) {
  return {
    inFlight: held.inFlight ?? 0,
    lastDoneAt: held.lastDoneAt ?? NOW,
    queue: Array.from({ length: held.queued ?? 0 }, () => ({}) as Job),
    rules: { ...plainLane(PER_ENDPOINT), ...rules },
    nextStartAt: 0,
    timer: undefined,
  } satisfies LaneState;
}

test('a lane in work with free slots is claimed for by name, up to AHEAD rounds less what it holds', () => {
  const plan = planClaim(new Map([['desk', lane({ inFlight: 2, queued: 1 })]]), PER_ENDPOINT, NOW);
  assert.deepEqual(plan.targeted, [['desk', AHEAD * PER_ENDPOINT - 3]]);
  assert.deepEqual(plan.roomFor, new Map([['desk', AHEAD * PER_ENDPOINT - 3]]));
  assert.equal(plan.workingLanes, 1);
  assert.equal(plan.workingWithRoom, true);
  assert.deepEqual(plan.exclude, []);
});

test('a lane holding a round already, or stuck on slow sends, takes nothing and is left out', () => {
  const lanes = new Map([
    ['queued', lane({ inFlight: 4, queued: 4 })],
    ['slow', lane({ inFlight: 4, lastDoneAt: NOW - 1_000 })],
    ['fast', lane({ inFlight: 4, lastDoneAt: NOW - 1 })],
  ]);
  const plan = planClaim(lanes, PER_ENDPOINT, NOW);
  assert.deepEqual(plan.exclude, ['queued', 'slow']);
  assert.deepEqual(plan.targeted, [['fast', AHEAD * PER_ENDPOINT - 4]]);
  assert.equal(plan.workingLanes, 3);
});

test('paused lanes take nothing, probing lanes one at a time, ordered lanes only their head', () => {
  const lanes = new Map([
    ['paused', lane({}, { pausedUntil: NOW + 1_000 })],
    ['probe-idle', lane({}, { probing: true })],
    ['probe-busy', lane({ inFlight: 1 }, { probing: true })],
    ['ordered-idle', lane({}, { ordered: true, concurrency: 1 })],
    ['ordered-busy', lane({ inFlight: 1 }, { ordered: true, concurrency: 1 })],
    ['callback:evt_1', lane({ inFlight: 1 })],
  ]);
  const plan = planClaim(lanes, PER_ENDPOINT, NOW);
  assert.deepEqual(plan.exclude, ['paused', 'probe-busy', 'ordered-idle', 'ordered-busy']);
  assert.deepEqual(
    plan.roomFor,
    new Map([
      ['probe-idle', 1],
      ['callback:evt_1', AHEAD * PER_ENDPOINT - 1],
    ]),
  );
  assert.deepEqual(plan.orderedHeads, ['ordered-idle']);
  // Write-backs keep their order through the claim over all lanes, never by name.
  assert.deepEqual(plan.targeted, []);
});

test('an idle plain lane takes the default and needs no entry of its own', () => {
  const plan = planClaim(new Map([['desk', lane({})]]), PER_ENDPOINT, NOW);
  assert.deepEqual(plan.roomFor, new Map());
  assert.deepEqual(plan.exclude, []);
  assert.equal(plan.workingLanes, 0);
});
