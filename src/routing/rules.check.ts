import { isUserChannel, RULE_CHANNELS } from '../channels/registry.ts';
import type { Db } from '../db/engine.ts';
import { assertReferencesExist } from '../directory/references.ts';
import { isAttributeName, isRole } from '../directory/users.validate.ts';
import { type FieldProblem, HeraldError } from '../errors.ts';
import { checkRuleNoise } from '../noise/options.ts';
import { isEventPath, looksLikeEventPath } from './patterns.ts';
import { conditionProblem } from './rules.condition.ts';
import type { ChannelSpec, Rule, RuleRecipients } from './rules.repo.ts';

/**
 * Checks what the schema cannot: the condition parses, paths are paths, segments say whom they mean,
 * channels exist, and the rule reaches someone. Throws `validation_failed` naming every problem's field.
 */
export function checkRule(
  rule: Pick<Rule, 'match' | 'recipients' | 'channels' | 'channels_by_severity' | 'noise'>,
): void {
  const problems: FieldProblem[] = [];
  if (rule.noise !== undefined) problems.push(...checkRuleNoise(rule.noise, 'body.noise'));
  const condition = rule.match.condition;
  if (condition !== undefined) {
    const problem = conditionProblem(condition);
    if (problem !== undefined) problems.push({ field: 'body.match.condition', message: problem });
  }
  problems.push(...recipientProblems(rule.recipients));
  problems.push(...channelProblems(rule.channels, 'body.channels'));
  for (const [severity, specs] of Object.entries(rule.channels_by_severity ?? {})) {
    problems.push(...channelProblems(specs, `body.channels_by_severity.${severity}`));
  }
  if (problems.length > 0) {
    const first = problems[0]!;
    throw new HeraldError('validation_failed', `${first.field}: ${first.message}`, { errors: problems });
  }
}

/** Refuses a rule naming users, groups, roles or attributes the directory does not have (`unknown_reference`). */
export async function assertRuleReferences(db: Db, recipients: RuleRecipients): Promise<void> {
  const segments = recipients.segments ?? [];
  await assertReferencesExist(db, {
    users: recipients.users ?? [],
    groups: recipients.groups ?? [],
    roles: segments.flatMap((s) => s.roles ?? []),
    attributes: segments.flatMap((s) => Object.keys(s.attributes ?? {})),
  });
}

function recipientProblems(r: RuleRecipients): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const reaching =
    (r.users?.length ?? 0) +
    (r.groups?.length ?? 0) +
    (r.from_data?.length ?? 0) +
    (r.segments?.length ?? 0) +
    (r.managers_of ?? []).filter((m) => m !== 'recipients').length;
  if (reaching === 0) {
    problems.push({
      field: 'body.recipients',
      message: 'must name at least one user, group, from_data path, segment or managers_of path',
    });
  }
  (r.segments ?? []).forEach((segment, i) => {
    const field = `body.recipients.segments.${i}`;
    const attributes = Object.entries(segment.attributes ?? {});
    if ((segment.roles?.length ?? 0) === 0 && attributes.length === 0) {
      problems.push({ field, message: 'must name roles or attributes (a segment is never everyone)' });
    }
    (segment.roles ?? []).forEach((role, j) => {
      if (!isRole(role)) problems.push({ field: `${field}.roles.${j}`, message: 'is not a valid role name' });
    });
    for (const [name, value] of attributes) {
      if (!isAttributeName(name)) {
        problems.push({ field: `${field}.attributes.${name}`, message: 'is not a valid attribute name' });
      } else if (looksLikeEventPath(value) && !isEventPath(value)) {
        problems.push({
          field: `${field}.attributes.${name}`,
          message: `"${value}" is not a path into the event: use "subject" or "data.<field>[.<field>...]"`,
        });
      }
    }
  });
  return problems;
}

function channelProblems(channels: readonly ChannelSpec[], field: string): FieldProblem[] {
  return channels.flatMap((spec, i) => {
    if (typeof spec === 'string') {
      return RULE_CHANNELS.includes(spec)
        ? []
        : [
            {
              field: `${field}.${i}`,
              message: `"${spec}" is not a known channel (known: ${RULE_CHANNELS.join(', ')})`,
            },
          ];
    }
    return spec.fallback.flatMap((channel, j) =>
      isUserChannel(channel) && spec.fallback.indexOf(channel) === j
        ? []
        : [
            {
              field: `${field}.${i}.fallback.${j}`,
              message: `"${channel}" cannot be part of a fallback (use email, push or sms, each once)`,
            },
          ],
    );
  });
}

/** The channel specs without repeats, in order. */
export function uniqueSpecs(channels: readonly ChannelSpec[]): ChannelSpec[] {
  const seen = new Set<string>();
  return channels.filter((spec) => {
    const key = JSON.stringify(spec);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
