import v8 from 'node:v8';
import vm from 'node:vm';
import jsonata from 'jsonata';
import { RegexCaseError, withoutIgnoreCase } from './regex-case.ts';

/*
 * Operators' expressions (rule conditions, endpoint filters and transforms) are JSONata, evaluated here with
 * the same limits wherever they run. JSONata has no access to the process, files or network; what is left is
 * time, and three things bound it:
 *
 * - JSONata's guardrails (LIMITS), checked at each step of an evaluation. A timer racing the promise would not
 *   do: an evaluation only yields to microtasks, so the timer never fires until it ends.
 * - Regular expressions cannot be stopped inside a step, so each regex literal runs on V8's linear-time engine
 *   (the `l` flag): no input makes it backtrack. That engine has no case-insensitive matching, so the `i` flag
 *   is first rewritten into classes of case variants (src/regex-case.ts). Regexes it cannot run
 *   (backreferences, lookaround, counted repetition over 16) are refused when an expression is saved, and fail
 *   if one is built later by `$eval`. V8's fallback to that engine on runaway backtracking also covers the
 *   regexes JSONata builds for lambda signatures.
 * - `$toMillis` with a picture runs a regex JSONata builds from the picture with the `i` flag: it runs under
 *   a hard time limit instead.
 */

// Both flags are process-wide and change no regex's meaning: one adds the `l` flag, the other moves a regex
// that has backtracked 50,000 times (and that the linear engine can run) over to the linear engine. Setting
// them again in each thread that loads this is harmless.
v8.setFlagsFromString('--enable-experimental-regexp-engine');
v8.setFlagsFromString('--enable-experimental-regexp-engine-on-excessive-backtracks');
try {
  // biome-ignore lint/complexity/useRegexLiterals: a literal with the l flag would not parse before the flag is set
  new RegExp('', 'l');
} catch {
  throw new Error(`this Node.js (${process.version}) has no linear-time regex engine; Herald needs it`);
}

/** A compiled expression. */
export type Expression = ReturnType<typeof jsonata>;

/** An expression that failed: JSONata's message, code and position; `timedOut` when it ran out of time. */
export type ExpressionError = Error & { code?: string; position?: number; timedOut: boolean };

/** Limits of one evaluation: time (ms), nesting depth, and the longest sequence it may build. */
const LIMITS = { timeout: 50, stack: 250, sequence: 100_000 };
const TIMED_OUT = 'D1012';

const outOfTime = () => Object.assign(new Error(), { code: TIMED_OUT, value: LIMITS.timeout });

/**
 * The regex class JSONata is given: it makes each regex literal afresh on each evaluation, so one created
 * here belongs to a single evaluation and stops matching once that evaluation is out of time (`$match` on a
 * long text calls `exec` once per match, all within one step).
 */
class LinearRegExp extends RegExp {
  readonly #deadline = Date.now() + LIMITS.timeout;

  constructor(regex: RegExp) {
    const { source, flags } = withoutIgnoreCase(regex.source, regex.flags);
    super(source, `${flags}l`);
  }

  override exec(text: string): RegExpExecArray | null {
    if (Date.now() > this.#deadline) throw outOfTime();
    return super.exec(text);
  }
}

const sandbox = vm.createContext({ call: undefined });
const callInSandbox = new vm.Script('call()');

/** Runs `call` and stops it once it takes longer than an evaluation may, even inside a regex. */
function bounded<T>(call: () => T): T {
  sandbox['call'] = call;
  try {
    return callInSandbox.runInContext(sandbox, { timeout: LIMITS.timeout }) as T;
  } catch (error) {
    if ((error as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') throw outOfTime();
    throw error;
  } finally {
    sandbox['call'] = undefined;
  }
}

type ToMillis = (this: unknown, timestamp: string | undefined, picture?: string) => number | undefined;
let builtInToMillis: Promise<ToMillis> | undefined;

// JSONata calls it with the focus as `this`; the built-in reads the evaluation's clock from it.
async function toMillis(this: unknown, timestamp: string | undefined, picture?: string) {
  builtInToMillis ??= jsonata('$toMillis')
    .evaluate(null)
    .then((f: { implementation: ToMillis }) => f.implementation);
  const original = await builtInToMillis;
  if (picture === undefined) return original.call(this, timestamp);
  return bounded(() => original.call(this, timestamp, picture));
}

const compiled = new Map<string, Expression>();

/** Compiles an expression, once per text; throws an ExpressionError when it does not parse. */
export function compileExpression(text: string): Expression {
  let expression = compiled.get(text);
  if (expression === undefined) {
    try {
      expression = jsonata(text, { ...LIMITS, RegexEngine: LinearRegExp as unknown as RegExpConstructor });
    } catch (error) {
      throw expressionError(error);
    }
    expression.registerFunction('toMillis', toMillis, '<s-s?:n>');
    if (compiled.size >= 2000) compiled.clear();
    compiled.set(text, expression);
  }
  return expression;
}

/** Evaluates an expression on `input`; throws an ExpressionError when it fails or runs out of limits. */
export async function evaluateExpression(expression: Expression, input: unknown): Promise<unknown> {
  try {
    return await expression.evaluate(input);
  } catch (error) {
    throw expressionError(error);
  }
}

/** How JSONata reads a result as a condition: a non-empty list, or any truthy value. */
export const isTrue = (value: unknown): boolean => (Array.isArray(value) ? value.length > 0 : Boolean(value));

/** What makes an expression unfit to save, and where (a character offset) when JSONata says. */
export interface ExpressionProblem {
  kind: 'syntax' | 'regex';
  message: string;
  position: number | undefined;
}

/** Checks an expression when it is saved: undefined when it parses and every regex in it runs in linear time. */
export function expressionProblem(text: string): ExpressionProblem | undefined {
  let expression: Expression;
  try {
    expression = jsonata(text);
  } catch (error) {
    const e = error as { message?: string; position?: number };
    return { kind: 'syntax', message: e.message ?? 'invalid expression', position: e.position };
  }
  for (const node of regexNodes(expression.ast())) {
    try {
      new LinearRegExp(node.value);
    } catch (error) {
      const regex = `regular expression /${node.value.source}/${node.value.flags.replace('g', '')}`;
      const why =
        error instanceof RegexCaseError
          ? error.message
          : 'cannot run in linear time (it may not use backreferences, lookahead, lookbehind or repetition ' +
            'counts over 16)';
      return { kind: 'regex', message: `${regex} ${why}`, position: node.position };
    }
  }
  return undefined;
}

/** The regex literals of an expression's syntax tree (the tree's shape varies by node, so all of it is walked). */
function regexNodes(ast: unknown): { value: RegExp; position: number | undefined }[] {
  const found: { value: RegExp; position: number | undefined }[] = [];
  const seen = new Set<object>();
  const walk = (node: unknown): void => {
    if (typeof node !== 'object' || node === null || seen.has(node) || node instanceof RegExp) return;
    seen.add(node);
    const { value, position } = node as { value?: unknown; position?: number };
    if (value instanceof RegExp) found.push({ value, position });
    for (const child of Object.values(node)) walk(child);
  };
  walk(ast);
  return found;
}

/** Whatever JSONata threw (its errors are plain objects with `code`, `message`, `position`) as an Error. */
function expressionError(thrown: unknown): ExpressionError {
  const e = (typeof thrown === 'object' && thrown !== null ? thrown : { message: String(thrown) }) as {
    message?: string;
    code?: string;
    position?: number;
    error?: { code?: string };
  };
  const where = e.position === undefined ? '' : ` at character ${e.position}`;
  const code = e.code === undefined ? '' : ` (${e.code}${where})`;
  return Object.assign(new Error(`${e.message ?? 'the expression failed'}${code}`, { cause: thrown }), {
    code: e.code,
    position: e.position,
    // `$eval` wraps the error of the expression it ran.
    timedOut: e.code === TIMED_OUT || e.error?.code === TIMED_OUT,
  });
}
