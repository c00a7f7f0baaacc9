import { request } from 'undici';
import type { HeraldProcess } from './processes.ts';

/** What the benchmark publishes and listens with. */
export interface BenchCredentials {
  /** The bench source's API key (publishes events). */
  apiKey: string;
  /** A user token of `USER` (opens the inbox stream). */
  userToken: string;
}

/** The user every benchmark event is addressed to. */
export const USER = 'u1';
const USERS = [USER, 'u2', 'u3', 'u4', 'u5'];

/** Creates the bench source, a few users and a token for `USER`, through the HTTP API as admin. */
export async function setUpHerald(herald: HeraldProcess): Promise<BenchCredentials> {
  const admin = herald.adminToken;
  const source = await api<{ api_key: string }>(herald.url, 'POST', '/v1/sources', admin, {
    id: 'bench',
    name: 'Benchmark',
  });
  for (const id of USERS)
    await api(herald.url, 'PUT', `/v1/users/${id}`, admin, { name: `Bench user ${id}` });
  const { token } = await api<{ token: string }>(herald.url, 'POST', `/v1/users/${USER}/tokens`, admin, {});
  return { apiKey: source.api_key, userToken: token };
}

/** Registers (or replaces) the outbound endpoint `bench` for the given event type patterns. */
export async function registerEndpoint(herald: HeraldProcess, url: string, types: string[]): Promise<void> {
  await putEndpoint(herald, 'bench', url, types);
}

/** Registers (or replaces) the outbound endpoint `id` for the given event type patterns. */
export async function putEndpoint(
  herald: HeraldProcess,
  id: string,
  url: string,
  types: string[],
): Promise<void> {
  await api(herald.url, 'PUT', `/v1/endpoints/${id}`, herald.adminToken, { url, types });
}

/** One JSON API call; throws with the status and problem body on anything but 2xx. */
export async function api<T = unknown>(
  base: string,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  token: string,
  body?: unknown,
): Promise<T> {
  const response = await request(base + path, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.body.text();
  if (response.statusCode >= 300)
    throw new Error(`${method} ${path} answered ${response.statusCode}: ${text}`);
  return (text === '' ? undefined : JSON.parse(text)) as T;
}
