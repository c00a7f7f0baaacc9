import jsonata from 'jsonata';

/*
 * A rule's `condition` is a JSONata expression over the event as the API shows it (presentEvent). JSONata
 * has no access to the process, files or network. Its own guardrails bound every evaluation: they are checked
 * at each step of the evaluation, so unlike a timer racing the promise they also stop an expression that
 * never yields.
 */

type Expression = ReturnType<typeof jsonata>;

/** Limits of one evaluation: time (ms), nesting depth, and the longest sequence it may build. */
const LIMITS = { timeout: 50, stack: 250, sequence: 100_000 };
const compiled = new Map<string, Expression>();

/** Compiles a condition, once per text; throws JSONata's error (`message`, `position`) when it does not parse. */
export function compileCondition(text: string): Expression {
  let expression = compiled.get(text);
  if (expression === undefined) {
    expression = jsonata(text, LIMITS);
    if (compiled.size >= 2000) compiled.clear();
    compiled.set(text, expression);
  }
  return expression;
}

/** Checks a condition when a rule is saved: undefined when it compiles, otherwise what is wrong and where. */
export function conditionProblem(text: string): string | undefined {
  try {
    jsonata(text);
    return undefined;
  } catch (error) {
    const e = error as { message?: string; position?: number; token?: string };
    const at = e.position === undefined ? '' : ` at character ${e.position}`;
    return `does not parse${at}: ${e.message ?? 'invalid expression'}`;
  }
}

/**
 * Whether the condition holds for `input`: a non-empty list or any truthy value. Throws an Error whose
 * message says what went wrong (JSONata's message and code) when the evaluation fails or runs out of limits;
 * `timedOut` is set on it when it ran out of time.
 */
export async function conditionHolds(expression: Expression, input: unknown): Promise<boolean> {
  let value: unknown;
  try {
    value = await expression.evaluate(input);
  } catch (error) {
    const e = error as { message?: string; code?: string; position?: number };
    const where = e.position === undefined ? '' : ` at character ${e.position}`;
    const failure = new Error(`${e.message ?? String(error)}${e.code ? ` (${e.code}${where})` : ''}`);
    throw Object.assign(failure, { timedOut: e.code === 'D1012' });
  }
  return Array.isArray(value) ? value.length > 0 : Boolean(value);
}
