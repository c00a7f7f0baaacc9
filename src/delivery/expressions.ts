import type { EndpointRow, EventRow } from '../db/tables.ts';
import { webhookPayload } from '../events/events.present.ts';
import {
  compileExpression,
  evaluateExpression,
  isTrue,
  expressionProblem as problemOf,
} from '../expressions.ts';

/*
 * Endpoint filters and transforms are JSONata expressions over the webhook payload (`{type, timestamp, data}`,
 * `data` being the event as the API shows it), evaluated within the limits every operator expression has
 * (src/expressions.ts).
 */

const evaluate = (text: string, event: EventRow) =>
  evaluateExpression(compileExpression(text), webhookPayload(event));

/** Whether the endpoint wants this event; throws an Error saying why when the filter fails on it. */
export async function evaluateFilter(endpoint: EndpointRow, event: EventRow): Promise<boolean> {
  return endpoint.filter === null || isTrue(await evaluate(endpoint.filter, event));
}

/** The body the endpoint's transform makes of the event; throws an Error saying why when it fails on it. */
export async function transformBody(endpoint: EndpointRow, event: EventRow): Promise<unknown> {
  return (await evaluate(endpoint.transform!, event)) ?? null;
}

/** Checks an expression when it is saved: undefined when it is fit to run, otherwise a message with the position. */
export function expressionProblem(text: string): string | undefined {
  const problem = problemOf(text);
  if (problem === undefined) return undefined;
  return `${problem.message}${problem.position === undefined ? '' : ` (at character ${problem.position})`}`;
}
