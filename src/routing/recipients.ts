import type { Db } from '../db/engine.ts';
import type { EventRow } from '../db/tables.ts';
import { expandGroups, queueGroupIds } from '../directory/groups.repo.ts';
import { findSegmentUsers, type SegmentUsers } from '../directory/segments.ts';
import { attributeTexts } from '../directory/traits.ts';
import { existingUserIds, findManagers, findUsersByEmails } from '../directory/users.repo.ts';
import { isEventPath, valuesAt } from './patterns.ts';
import { channelKey, channelsFor, type Rule } from './rules.repo.ts';

/** One person an event reaches, on which channels, and every route that led there. */
export interface Recipient {
  userId: string;
  channels: Set<string>;
  via: string[];
}

/** A reference routing could not turn into a person. */
export interface Unresolved {
  kind: 'user' | 'group' | 'data' | 'segment' | 'manager';
  ref: string;
  via: string;
  reason: string;
}

/** A route to people for one event: its explicit recipients, a rule it matched, or a subscription. */
export type Route =
  | { kind: 'explicit'; users: readonly string[]; groups: readonly string[] }
  | { kind: 'rule'; rule: Rule }
  | { kind: 'subscription'; id: string; userId: string; channels: readonly string[] };

/** A shared queue an event reaches (one item for the group, not a notification per member), and how. */
export interface QueueRoute {
  groupId: string;
  via: string[];
}

/** Who one event reaches. */
export interface Resolved {
  recipients: Map<string, Recipient>;
  /** The shared queues it reaches, by group id. */
  queues: Map<string, QueueRoute>;
  unresolved: Unresolved[];
}

/** A reference to people, before lookup; `rule` is the rule that named it, if one did. */
type Ref = { via: string; channels: readonly string[]; rule?: string } & (
  | { kind: 'user'; ref: string }
  | { kind: 'group'; ref: string }
  | { kind: 'data'; ref: string }
  | { kind: 'segment'; ref: string; roles: readonly string[]; values: Record<string, string[]> }
  | { kind: 'manager'; ref: string; values: string[] }
  | { kind: 'missing'; ref: string; of: Unresolved['kind']; reason: string }
);
type RefOf<K extends Ref['kind']> = Extract<Ref, { kind: K }>;

/** The references an event's routes name. */
function refsOf(event: EventRow, routes: readonly Route[]): Ref[] {
  const refs: Ref[] = [];
  let data: unknown;
  const at = (path: string) => {
    data ??= event.data === null ? null : JSON.parse(event.data);
    return valuesAt(event.subject, data, path);
  };
  for (const route of routes) {
    if (route.kind === 'explicit') {
      const channels = ['inapp'];
      for (const ref of route.users) refs.push({ kind: 'user', ref, via: 'recipients', channels });
      for (const ref of route.groups) refs.push({ kind: 'group', ref, via: 'recipients', channels });
    } else if (route.kind === 'subscription') {
      const channels = ['inapp', ...route.channels];
      refs.push({ kind: 'user', ref: route.userId, via: `subscription:${route.id}`, channels });
    } else {
      for (const ref of ruleRefs(route.rule, event, at)) refs.push({ ...ref, rule: route.rule.id });
    }
  }
  return refs;
}

function ruleRefs(rule: Rule, event: EventRow, at: (path: string) => string[]): Ref[] {
  const refs: Ref[] = [];
  const via = `rule:${rule.id}`;
  const channels = channelsFor(rule, event.severity).map(channelKey);
  const r = rule.recipients;
  const missing = (of: Unresolved['kind'], path: string, where = via): Ref => ({
    kind: 'missing',
    of,
    ref: path,
    via: where,
    channels: [],
    reason: 'the event has no value at this path',
  });
  for (const ref of r.users ?? []) refs.push({ kind: 'user', ref, via, channels });
  for (const ref of r.groups ?? []) refs.push({ kind: 'group', ref, via, channels });
  for (const path of r.from_data ?? []) {
    const values = at(path);
    if (values.length === 0) refs.push(missing('data', path));
    for (const ref of values) refs.push({ kind: 'data', ref, via: `${via}:${path}`, channels });
  }
  (r.segments ?? []).forEach((segment, i) => {
    const where = `${via}:segment:${i}`;
    const values: Record<string, string[]> = {};
    let complete = true;
    for (const [name, wanted] of Object.entries(segment.attributes ?? {})) {
      values[name] = isEventPath(wanted) ? at(wanted) : attributeTexts(wanted);
      if (values[name].length === 0) {
        refs.push(missing('segment', `attributes.${name}: ${wanted}`, where));
        complete = false;
      }
    }
    if (complete) {
      const ref = describeSegment(segment.roles ?? [], values);
      refs.push({ kind: 'segment', ref, roles: segment.roles ?? [], values, via: where, channels });
    }
  });
  for (const of of r.managers_of ?? []) {
    const where = `${via}:manager_of:${of}`;
    const values = of === 'recipients' ? [] : at(of);
    if (of !== 'recipients' && values.length === 0) refs.push(missing('manager', of, where));
    else refs.push({ kind: 'manager', ref: of, values, via: where, channels });
  }
  return refs;
}

function describeSegment(roles: readonly string[], values: Record<string, string[]>): string {
  const parts = roles.length > 0 ? [`role in (${roles.join(', ')})`] : [];
  for (const [name, list] of Object.entries(values)) parts.push(`${name} in (${list.join(', ')})`);
  return parts.join(' and ');
}

/**
 * Decides who each event of a batch reaches along its routes. The directory is read once for the whole
 * batch: groups (with nesting), users by id and by email, each shape of segment, then the managers of those
 * found; a few queries per batch, never per event.
 */
export async function resolveRecipients(
  db: Db,
  batch: readonly { event: EventRow; routes: readonly Route[] }[],
): Promise<Map<string, Resolved>> {
  const perEvent = batch.map(({ event, routes }) => ({ event, refs: refsOf(event, routes) }));
  const all = perEvent.flatMap((e) => e.refs);
  const of = <K extends Ref['kind']>(kind: K) => all.filter((r): r is RefOf<K> => r.kind === kind);
  const lookup = await lookUpPeople(db, [
    ...of('user').map((r) => r.ref),
    ...of('data').map((r) => r.ref),
    ...of('manager').flatMap((r) => r.values),
  ]);
  const groups = of('group').map((r) => r.ref);
  // A queue group takes one shared item instead of reaching its members one by one.
  const queues = groups.length > 0 ? await queueGroupIds(db, groups) : new Set<string>();
  const members = await expandGroups(
    db,
    groups.filter((g) => !queues.has(g)),
  );
  const segments = await lookUpSegments(db, of('segment'));

  const out = new Map<string, Resolved>();
  const managerQuestions: { resolved: Resolved; ref: RefOf<'manager'>; users: string[] }[] = [];
  for (const { event, refs } of perEvent) {
    const resolved: Resolved = { recipients: new Map(), queues: new Map(), unresolved: [] };
    out.set(event.id, resolved);
    const reachedByRule = new Map<string, Set<string>>();
    const add = (userId: string, ref: Ref, via = ref.via) => {
      addRecipient(resolved, userId, ref.channels, via);
      if (ref.rule !== undefined) {
        let reached = reachedByRule.get(ref.rule);
        if (reached === undefined) {
          reached = new Set();
          reachedByRule.set(ref.rule, reached);
        }
        reached.add(userId);
      }
    };
    const unresolved = (ref: Ref, kind: Unresolved['kind'], reason: string, name = ref.ref) =>
      resolved.unresolved.push({ kind, ref: name, via: ref.via, reason });
    for (const ref of refs) {
      if (ref.kind === 'missing') unresolved(ref, ref.of, ref.reason);
      else if (ref.kind === 'group' && queues.has(ref.ref)) {
        const queue = resolved.queues.get(ref.ref) ?? { groupId: ref.ref, via: [] };
        resolved.queues.set(ref.ref, queue);
        const via = `${ref.via}:queue:${ref.ref}`;
        if (!queue.via.includes(via)) queue.via.push(via);
      } else if (ref.kind === 'group') {
        const people = members.get(ref.ref);
        if (people === undefined) unresolved(ref, 'group', 'unknown or empty group');
        for (const userId of people ?? []) add(userId, ref, `${ref.via}:group:${ref.ref}`);
      } else if (ref.kind === 'segment') {
        const people = segments.membersOf(ref);
        if (people.length === 0) unresolved(ref, 'segment', 'nobody in the directory fits this segment');
        for (const userId of people) add(userId, ref);
      } else if (ref.kind === 'user' || ref.kind === 'data') {
        const userId = lookup(ref.ref);
        if (userId === undefined) unresolved(ref, ref.kind, 'no such user in the directory');
        else add(userId, ref);
      }
    }
    // Managers last: `recipients` means everyone the rule reached by its other routes.
    for (const ref of refs) {
      if (ref.kind !== 'manager') continue;
      const users: string[] = [];
      if (ref.ref === 'recipients') users.push(...(reachedByRule.get(ref.rule!) ?? []));
      for (const value of ref.values) {
        const userId = lookup(value);
        if (userId === undefined) unresolved(ref, 'manager', 'no such user in the directory', value);
        else users.push(userId);
      }
      managerQuestions.push({ resolved, ref, users });
    }
  }

  const managers = await findManagers(
    db,
    managerQuestions.flatMap((q) => q.users),
  );
  for (const { resolved, ref, users } of managerQuestions) {
    for (const userId of users) {
      const found = managers.get(userId);
      const unresolved = (reason: string, name: string) =>
        resolved.unresolved.push({ kind: 'manager', ref: name, via: ref.via, reason });
      if (found?.manager == null) unresolved('has no manager in the directory', userId);
      else if (!found.known)
        unresolved(`is the manager of "${userId}" but not in the directory`, found.manager);
      else addRecipient(resolved, found.manager, ref.channels, ref.via);
    }
  }
  return out;
}

function addRecipient(resolved: Resolved, userId: string, channels: readonly string[], via: string): void {
  let recipient = resolved.recipients.get(userId);
  if (recipient === undefined) {
    recipient = { userId, channels: new Set(), via: [] };
    resolved.recipients.set(userId, recipient);
  }
  for (const channel of channels) recipient.channels.add(channel);
  if (!recipient.via.includes(via)) recipient.via.push(via);
}

/** Finds users by id, or else by email (ignoring case); returns a lookup from reference to user id. */
async function lookUpPeople(db: Db, refs: string[]): Promise<(ref: string) => string | undefined> {
  const known = await existingUserIds(db, refs);
  const emails = refs.filter((ref) => ref.includes('@') && !known.has(ref));
  const byEmail = new Map<string, string>();
  for (const user of emails.length > 0 ? await findUsersByEmails(db, emails) : []) {
    if (user.email !== null) byEmail.set(user.email, user.id);
  }
  return (ref) => (known.has(ref) ? ref : byEmail.get(ref.toLowerCase()));
}

/**
 * Reads every segment of the batch: one directory query per shape (roles and attribute names), asking for
 * all the values the batch's events want; each event's segment is then picked out of that answer.
 */
async function lookUpSegments(db: Db, refs: RefOf<'segment'>[]) {
  const shapeOf = (ref: RefOf<'segment'>) =>
    JSON.stringify([[...ref.roles].sort(), Object.keys(ref.values).sort()]);
  const shapes = new Map<string, { users: SegmentUsers; byFirst: Map<string, string[]> | undefined }>();
  for (const [shape, list] of Map.groupBy(refs, shapeOf)) {
    const attributes: Record<string, string[]> = {};
    for (const ref of list) {
      for (const [name, values] of Object.entries(ref.values)) {
        attributes[name] = [...(attributes[name] ?? []), ...values];
      }
    }
    const users = await findSegmentUsers(db, { roles: list[0]!.roles, attributes });
    const first = Object.keys(attributes).sort()[0];
    let byFirst: Map<string, string[]> | undefined;
    if (first !== undefined) {
      byFirst = new Map();
      for (const [userId, matched] of users) {
        for (const value of matched.get(first)!) {
          const list = byFirst.get(value);
          if (list === undefined) byFirst.set(value, [userId]);
          else list.push(userId);
        }
      }
    }
    shapes.set(shape, { users, byFirst });
  }
  return {
    /** The users in one event's segment. */
    membersOf(ref: RefOf<'segment'>): string[] {
      const { users, byFirst } = shapes.get(shapeOf(ref))!;
      if (byFirst === undefined) return [...users.keys()];
      const names = Object.keys(ref.values).sort();
      const candidates = new Set(ref.values[names[0]!]!.flatMap((v) => byFirst.get(v) ?? []));
      return [...candidates].filter((userId) => {
        const matched = users.get(userId)!;
        return names.every((name) => ref.values[name]!.some((v) => matched.get(name)!.has(v)));
      });
    },
  };
}
