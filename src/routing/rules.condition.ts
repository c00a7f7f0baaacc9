import { type Expression, evaluateExpression, expressionProblem, isTrue } from '../expressions.ts';

/*
 * A rule's `condition` is a JSONata expression over the event as the API shows it (presentEvent), evaluated
 * within the limits every operator expression has (src/expressions.ts).
 */

/** Compiles a condition, once per text; throws an Error with JSONata's message when it does not parse. */
export { compileExpression as compileCondition } from '../expressions.ts';

/** Checks a condition when a rule is saved: undefined when it is fit to run, otherwise what is wrong and where. */
export function conditionProblem(text: string): string | undefined {
  const problem = expressionProblem(text);
  if (problem === undefined) return undefined;
  const at = problem.position === undefined ? '' : ` at character ${problem.position}`;
  return problem.kind === 'syntax' ? `does not parse${at}: ${problem.message}` : `${problem.message}${at}`;
}

/**
 * Whether the condition holds for `input`: a non-empty list or any truthy value. Throws an Error whose
 * message says what went wrong (JSONata's message and code) when the evaluation fails or runs out of limits;
 * `timedOut` is set on it when it ran out of time.
 */
export async function conditionHolds(expression: Expression, input: unknown): Promise<boolean> {
  return isTrue(await evaluateExpression(expression, input));
}
