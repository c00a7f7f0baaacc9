import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import { groupMembers } from '../directory/groups.repo.ts';
import { existingUserIds, findUsersByEmails } from '../directory/users.repo.ts';
import { matchesAnyType } from './patterns.ts';
import { channelKey, type Rule } from './rules.repo.ts';

/** One person an event reaches, on which channels, and every route that led there. */
export interface Recipient {
  userId: string;
  channels: Set<string>;
  via: string[];
}

/** A reference routing could not turn into a person. */
export interface Unresolved {
  kind: 'user' | 'group' | 'data';
  ref: string;
  via: string;
  reason: string;
}

export interface Decision {
  recipients: Map<string, Recipient>;
  unresolved: Unresolved[];
  rules: string[];
}

/** A reference to people, before lookup: a user id, a group id, or a value from the event (id or email). */
interface Ref {
  kind: 'user' | 'group' | 'data';
  ref: string;
  via: string;
  channels: readonly string[];
}

/** Does `rule` apply to `event`? Types by pattern; sources and severities, when given, must list the event's. */
export function ruleMatches(rule: Rule, event: EventRow): boolean {
  const { match } = rule;
  if (!matchesAnyType(match.types, event.type)) return false;
  if (match.sources && match.sources.length > 0 && !match.sources.includes(event.source_id)) return false;
  if (match.severities && match.severities.length > 0 && !match.severities.includes(event.severity))
    return false;
  return true;
}

/** Reads a dotted path (`data.owner`, `subject`) from an event; strings and string arrays are kept. */
function valuesAt(event: EventRow, data: unknown, path: string): string[] {
  let value: unknown = path === 'subject' ? event.subject : undefined;
  if (path.startsWith('data.')) {
    value = data;
    for (const part of path.slice(5).split('.')) {
      value =
        value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[part] : undefined;
    }
  }
  const list = Array.isArray(value) ? value : [value];
  return list.filter((v): v is string | number => typeof v === 'string' || typeof v === 'number').map(String);
}

/** The references an event names: its explicit recipients (in-app) and those of every rule it matches. */
function refsOf(event: EventRow, rules: readonly Rule[]): { refs: Ref[]; rules: string[] } {
  const refs: Ref[] = [];
  const explicit =
    event.recipients === null
      ? null
      : (JSON.parse(event.recipients) as { users?: string[]; groups?: string[] });
  for (const user of explicit?.users ?? [])
    refs.push({ kind: 'user', ref: user, via: 'recipients', channels: ['inapp'] });
  for (const group of explicit?.groups ?? [])
    refs.push({ kind: 'group', ref: group, via: 'recipients', channels: ['inapp'] });
  const matched: string[] = [];
  let data: unknown;
  for (const rule of rules) {
    if (!ruleMatches(rule, event)) continue;
    matched.push(rule.id);
    const via = `rule:${rule.id}`;
    const r = rule.recipients;
    const channels = rule.channels.map(channelKey);
    for (const user of r.users ?? []) refs.push({ kind: 'user', ref: user, via, channels });
    for (const group of r.groups ?? []) refs.push({ kind: 'group', ref: group, via, channels });
    for (const path of r.from_data ?? []) {
      data ??= event.data === null ? null : JSON.parse(event.data);
      const values = valuesAt(event, data, path);
      if (values.length === 0) refs.push({ kind: 'data', ref: path, via, channels: [] });
      for (const value of values) refs.push({ kind: 'data', ref: value, via: `${via}:${path}`, channels });
    }
  }
  return { refs, rules: matched };
}

/**
 * Decides who each event of a batch reaches. The directory is read once for the whole batch (users, group
 * members, emails), so routing costs a few queries per batch rather than per event.
 */
export async function decide(
  db: Db,
  events: readonly EventRow[],
  rules: readonly Rule[],
): Promise<Map<string, Decision>> {
  const perEvent = events.map((event) => ({ event, ...refsOf(event, rules) }));
  const all = perEvent.flatMap((e) => e.refs);
  const groupIds = [...new Set(all.filter((r) => r.kind === 'group').map((r) => r.ref))];
  const members = groupIds.length > 0 ? await groupMembers(db, groupIds) : [];
  const membersOf = Map.groupBy(members, (m) => m.group_id);
  const dataRefs = all.filter((r) => r.kind === 'data' && r.channels.length > 0).map((r) => r.ref);
  const candidateIds = new Set([...all.filter((r) => r.kind === 'user').map((r) => r.ref), ...dataRefs]);
  const known = await existingUserIds(db, [...candidateIds]);
  for (const m of members) known.add(m.user_id);
  const emails = dataRefs.filter((ref) => ref.includes('@') && !known.has(ref));
  const byEmail = new Map<string, string>();
  for (const user of emails.length > 0 ? await findUsersByEmails(db, emails) : []) {
    if (user.email !== null) byEmail.set(user.email.toLowerCase(), user.id);
  }

  const decisions = new Map<string, Decision>();
  for (const { event, refs, rules: matched } of perEvent) {
    const recipients = new Map<string, Recipient>();
    const unresolved: Unresolved[] = [];
    const add = (userId: string, ref: Ref) => {
      let recipient = recipients.get(userId);
      if (recipient === undefined) {
        recipient = { userId, channels: new Set(), via: [] };
        recipients.set(userId, recipient);
      }
      for (const channel of ref.channels) recipient.channels.add(channel);
      if (!recipient.via.includes(ref.via)) recipient.via.push(ref.via);
    };
    for (const ref of refs) {
      if (ref.kind === 'group') {
        const list = membersOf.get(ref.ref);
        if (list === undefined) unresolved.push({ ...pick(ref), reason: 'unknown or empty group' });
        for (const m of list ?? []) add(m.user_id, { ...ref, via: `${ref.via}:group:${ref.ref}` });
      } else if (ref.kind === 'data' && ref.channels.length === 0) {
        unresolved.push({ ...pick(ref), reason: 'the event has no value at this path' });
      } else {
        const userId = known.has(ref.ref) ? ref.ref : byEmail.get(ref.ref.toLowerCase());
        if (userId === undefined) unresolved.push({ ...pick(ref), reason: 'no such user in the directory' });
        else add(userId, ref);
      }
    }
    decisions.set(event.id, { recipients, unresolved, rules: matched });
  }
  return decisions;
}

const pick = (ref: Ref) => ({ kind: ref.kind, ref: ref.ref, via: ref.via });
