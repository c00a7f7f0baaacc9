import type { Db } from '../db/engine.ts';
import { HeraldError, invalidMany } from '../errors.ts';
import { checkEscalation, type EscalationOptions } from './options.ts';
import { findPolicy } from './policies.repo.ts';

/**
 * Refuses escalation options with out-of-range durations (`validation_failed`) or naming a policy that
 * does not exist (`unknown_reference`, listing it in `unknown.escalation_policies`).
 */
export async function assertEscalation(
  db: Db,
  options: EscalationOptions | undefined,
  prefix: string,
): Promise<void> {
  if (options === undefined) return;
  const problems = checkEscalation(options, prefix);
  if (problems.length > 0) throw invalidMany(problems);
  const id = options.escalation_policy;
  if (id !== undefined && (await findPolicy(db, id)) === undefined) {
    throw new HeraldError('unknown_reference', `The request names an unknown escalation policy: "${id}"`, {
      extra: { unknown: { escalation_policies: [id] } },
    });
  }
}
