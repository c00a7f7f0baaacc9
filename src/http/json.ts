import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type FieldProblem, invalidMany } from '../errors.ts';

/**
 * How deeply a JSON body may nest (arrays and objects). No real payload comes near it, and it keeps every
 * recursive walk over what Herald accepts (hashing, storing, rendering, answering) far from the end of the stack.
 */
export const MAX_JSON_DEPTH = 256;

// Largest number of problems reported for one value.
const MAX_PROBLEMS = 20;

export interface TextRules {
  /** Names the value in the problems: `body`, `events.3`; empty for a top-level event. */
  prefix: string;
  /** Refuse NUL characters in text (keys included), except under this top-level member, if given. */
  refuseNul?: { except?: string };
}

interface Frame {
  value: unknown;
  depth: number;
  key: string;
  parent: Frame | undefined;
  /** The top-level member the frame sits in (undefined for the value itself). */
  member: string | undefined;
  nulAllowed: boolean;
}

/**
 * What Herald cannot take in a parsed JSON value: nesting deeper than {@link MAX_JSON_DEPTH}, text (keys
 * included) that is not well-formed UTF-16 (a lone surrogate, which no database stores as sent), and NUL
 * characters where `rules` refuse them. Walks without recursion, so any depth is safe to look at.
 */
export function jsonProblems(value: unknown, rules: TextRules): FieldProblem[] {
  const problems: FieldProblem[] = [];
  const stack: Frame[] = [
    { value, depth: 0, key: '', parent: undefined, member: undefined, nulAllowed: !rules.refuseNul },
  ];
  while (stack.length > 0 && problems.length < MAX_PROBLEMS) {
    const frame = stack.pop()!;
    const v = frame.value;
    if (typeof v === 'string') {
      const problem = textProblem(v, frame.nulAllowed);
      if (problem !== undefined) problems.push({ field: fieldOf(frame, rules.prefix), message: problem });
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (frame.depth >= MAX_JSON_DEPTH) {
      problems.push({
        field: [rules.prefix, frame.member].filter(Boolean).join('.'),
        message: `nests more than ${MAX_JSON_DEPTH} levels deep`,
      });
      // One problem for a member is enough: the rest of it (on top of the stack) is not looked at.
      while (stack.length > 0 && stack.at(-1)!.member === frame.member) stack.pop();
      continue;
    }
    const entries = Array.isArray(v) ? v.map((item, i) => [String(i), item] as const) : Object.entries(v);
    // Pushed last to first, so that problems come in the order of the input.
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i]!;
      const top = frame.parent === undefined;
      const nulAllowed = frame.nulAllowed || (top && key === rules.refuseNul?.except);
      if (!Array.isArray(v)) {
        const problem = textProblem(key, nulAllowed);
        if (problem !== undefined)
          problems.push({ field: fieldOf(frame, rules.prefix), message: `has a key that ${problem}` });
      }
      const member = top ? key : frame.member;
      stack.push({ value: child, depth: frame.depth + 1, key, parent: frame, member, nulAllowed });
    }
  }
  return problems.slice(0, MAX_PROBLEMS);
}

function textProblem(text: string, nulAllowed: boolean): string | undefined {
  if (!text.isWellFormed()) return 'is not well-formed Unicode (it holds a lone surrogate)';
  if (!nulAllowed && text.includes('\u0000')) return 'must not contain NUL characters';
  return undefined;
}

function fieldOf(frame: Frame, prefix: string): string {
  const path: string[] = [];
  for (let f: Frame | undefined = frame; f?.parent !== undefined; f = f.parent) path.push(f.key);
  return [prefix, ...path.reverse()].filter(Boolean).join('.') || 'body';
}

/**
 * The JSON parser of every route: Fastify's (which refuses `__proto__` and `constructor` keys), then
 * {@link jsonProblems}, so a body too deep or with broken text is a 400 before any code walks it.
 */
function strictJsonParser(app: FastifyInstance) {
  const parse = app.getDefaultJsonParser('error', 'error');
  return (request: FastifyRequest, body: string, done: (error: Error | null, value?: unknown) => void) =>
    parse(request, body, (error: Error | null, value?: unknown) => {
      if (error !== null) return done(error);
      const problems = jsonProblems(value, { prefix: 'body' });
      done(problems.length > 0 ? invalidMany(problems) : null, value);
    });
}

/** Installs {@link strictJsonParser} for `application/json` in place of Fastify's own. */
export function installJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, strictJsonParser(app));
}
