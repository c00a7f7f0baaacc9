import type { Transaction } from 'kysely';
import type { Database } from '../db/tables.ts';
import type { EventDecision } from './decision.ts';
import type { Rule } from './rules.repo.ts';

/**
 * Gives each event that declares no actions those of the first matching rule that declares some (and its
 * response policy), on the stored event and on the row being routed, so notifications, links and the actions
 * API see them. One update per distinct set of actions in the batch.
 */
export async function applyRuleActions(
  trx: Transaction<Database>,
  decisions: ReadonlyMap<string, EventDecision>,
  rules: readonly Rule[],
): Promise<void> {
  const declaring = new Map(rules.filter((r) => r.actions !== undefined).map((r) => [r.id, r.actions!]));
  if (declaring.size === 0) return;
  const updates = new Map<string, { actions: string; policy: string | null; ids: string[] }>();
  for (const { event, rules: outcomes } of decisions.values()) {
    if (event.actions !== null) continue;
    const first = outcomes.find((o) => o.matched && declaring.has(o.rule));
    if (first === undefined) continue;
    const declared = declaring.get(first.rule)!;
    const actions = JSON.stringify(declared.actions);
    const policy = declared.response_policy === undefined ? null : JSON.stringify(declared.response_policy);
    event.actions = actions;
    if (policy !== null && event.response_policy === null) event.response_policy = policy;
    const key = `${actions}\u0000${policy}`;
    const update = updates.get(key) ?? { actions, policy, ids: [] };
    update.ids.push(event.id);
    updates.set(key, update);
  }
  for (const { actions, policy, ids } of updates.values()) {
    await trx.updateTable('events').set({ actions }).where('id', 'in', ids).execute();
    if (policy !== null) {
      await trx
        .updateTable('events')
        .set({ response_policy: policy })
        .where('id', 'in', ids)
        .where('response_policy', 'is', null)
        .execute();
    }
  }
}
