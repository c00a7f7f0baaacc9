import assert from 'node:assert/strict';
import type { Message } from '../src/channels/channel.ts';
import type { TestHerald } from './helpers.ts';

/*
 * Test data builders: each creates one thing through the public API (as the admin) and returns what the API
 * answered. Overrides replace the defaults; ids are unique per call so tests never collide.
 */

let counter = 0;

/** A unique id with a readable prefix, e.g. `src-3-k2f9`. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}-${Math.random().toString(36).slice(2, 6)}`;
}

export interface CreatedSource {
  id: string;
  name: string;
  callback_url: string | null;
  created_at: string;
  updated_at: string;
  /** The source's first API key, shown only in the create response. */
  api_key: string;
}

/** Creates a source via `POST /v1/sources`; returns it with its API key. */
export async function createSource(
  h: TestHerald,
  overrides: { id?: string; name?: string; callback_url?: string | null } = {},
): Promise<CreatedSource> {
  const id = overrides.id ?? uniqueId('src');
  const body: Record<string, unknown> = { id, name: overrides.name ?? `Source ${id}` };
  if (overrides.callback_url != null) body['callback_url'] = overrides.callback_url;
  const res = await h.api('POST', '/v1/sources', body);
  assert.equal(res.status, 201, `createSource: ${res.text}`);
  return res.body as CreatedSource;
}

export interface CreatedUser {
  id: string;
  name: string;
  email: string | null;
  phone: string | null;
  locale: string | null;
  timezone: string | null;
  manager: string | null;
  attributes: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

/** Creates (or replaces) a user via `PUT /v1/users/{id}`; returns the user. */
export async function createUser(
  h: TestHerald,
  overrides: Partial<Omit<CreatedUser, 'created_at' | 'updated_at'>> = {},
): Promise<CreatedUser> {
  const { id = uniqueId('user'), ...rest } = overrides;
  const body = { name: `User ${id}`, ...rest };
  const res = await h.api('PUT', `/v1/users/${encodeURIComponent(id)}`, body);
  assert.ok(res.status === 200 || res.status === 201, `createUser: ${res.text}`);
  return res.body as CreatedUser;
}

export interface CreatedGroup {
  id: string;
  name: string;
  members: string[];
  created_at: string;
  updated_at: string;
}

/** Creates (or replaces) a group with exactly `members` via `PUT /v1/groups/{id}`. */
export async function createGroup(
  h: TestHerald,
  id: string,
  members: string[],
  name = `Group ${id}`,
): Promise<CreatedGroup> {
  const res = await h.api('PUT', `/v1/groups/${encodeURIComponent(id)}`, { name, members });
  assert.ok(res.status === 200 || res.status === 201, `createGroup: ${res.text}`);
  return res.body as CreatedGroup;
}

/** Issues an inbox token for a user via `POST /v1/users/{id}/tokens`. */
export async function userToken(h: TestHerald, userId: string): Promise<string> {
  const res = await h.api('POST', `/v1/users/${encodeURIComponent(userId)}/tokens`, {});
  assert.ok(res.status < 300 && typeof res.body?.token === 'string', `userToken: ${res.text}`);
  return res.body.token as string;
}

/** A message as the delivery pipeline hands it to a channel provider: a purchase-order approval. */
export function channelMessage(overrides: Partial<Message> = {}): Message {
  return {
    id: 'msg_1',
    eventId: 'evt_1',
    notificationId: 'ntf_1',
    type: 'po.approval_requested',
    severity: 'warning',
    title: 'PO 4711 needs approval',
    text: 'Acme Corp ordered 12 laptops for 14,400 EUR.',
    html: null,
    url: 'https://erp.example.com/po/4711',
    actions: [],
    locale: null,
    unsubscribeUrl: null,
    expiresAt: null,
    data: {},
    ...overrides,
  };
}

/** Publishes an event as a source (by its API key) and checks it was accepted; returns its Herald id. */
export async function publishEvent(
  h: TestHerald,
  apiKey: string,
  event: Record<string, unknown>,
): Promise<string> {
  const res = await h.api('POST', '/v1/events', event, apiKey);
  assert.equal(res.status, 202, res.text);
  return res.body.id as string;
}
