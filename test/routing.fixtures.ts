import assert from 'node:assert/strict';
import type { TestHerald } from './helpers.ts';

/*
 * Helpers for the routing tests: people with roles, attributes and managers; rules; publishing an event and
 * routing everything pending; reading back who got what.
 */

export interface Person {
  id: string;
  email?: string;
  manager?: string;
  roles?: string[];
  attributes?: Record<string, unknown>;
}

/** Creates (or replaces) people via `PUT /v1/users/{id}`, in order (managers first if they must exist). */
export async function people(h: TestHerald, ...list: Person[]): Promise<void> {
  for (const { id, ...rest } of list) {
    const res = await h.api('PUT', `/v1/users/${id}`, { name: `User ${id}`, ...rest });
    assert.ok(res.status === 200 || res.status === 201, `person ${id}: ${res.text}`);
  }
}

/** Creates (or replaces) a rule; fails the test when it is refused. */
export async function rule(h: TestHerald, id: string, body: Record<string, unknown>): Promise<void> {
  const res = await h.api('PUT', `/v1/rules/${id}`, { channels: ['inapp'], ...body });
  assert.ok(res.status === 200 || res.status === 201, `rule ${id}: ${res.text}`);
}

// Publishing and routing are shared with the other tests.
export { publishEvent as publish } from './factories.ts';
export { routeAll } from './helpers.ts';

/** `GET /v1/events/{id}`. */
export async function eventOf(h: TestHerald, id: string) {
  const res = await h.api('GET', `/v1/events/${id}`);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** Who an event notified, as `user: channels` sorted by user. */
export async function notified(h: TestHerald, eventId: string): Promise<Record<string, string[]>> {
  const event = await eventOf(h, eventId);
  return Object.fromEntries(
    (event.notifications as { user_id: string; channels: string[] }[])
      .map((n) => [n.user_id, n.channels] as const)
      .sort(([a], [b]) => (a < b ? -1 : 1)),
  );
}

/** The user deliveries an event made, as `user:channel` sorted. */
export async function sends(h: TestHerald, eventId: string): Promise<string[]> {
  const rows = await h.store.db
    .selectFrom('deliveries')
    .select(['user_id', 'channel'])
    .where('event_id', '=', eventId)
    .where('user_id', 'is not', null)
    .execute();
  return rows.map((r) => `${r.user_id}:${r.channel}`).sort();
}

/** `POST /v1/routing/explain`; fails the test unless it answers 200. */
export async function explain(h: TestHerald, event: Record<string, unknown>) {
  const res = await h.api('POST', '/v1/routing/explain', event);
  assert.equal(res.status, 200, res.text);
  return res.body;
}

/** An explanation's rules as `id: reason` (`matched` for a match). */
export function reasons(explanation: { rules: { rule: string; matched: boolean; reason?: string }[] }) {
  return Object.fromEntries(explanation.rules.map((r) => [r.rule, r.matched ? 'matched' : r.reason]));
}
