import jsonata from 'jsonata';
import type { EndpointRow, EventRow } from '../db/tables.ts';
import { webhookPayload } from '../events/events.present.ts';

/*
 * Endpoint filters and transforms are JSONata expressions over the webhook payload (`{type, timestamp, data}`,
 * `data` being the event as the API shows it). JSONata has no access to the process, files or network, and
 * each evaluation is bounded in time, so an operator's expression cannot hurt Herald.
 */

type Expression = ReturnType<typeof jsonata>;
const compiled = new Map<string, Expression>();
const TIMEOUT_MS = 100;

/** Compiles an expression; throws JSONata's error (with `position` and `message`) when it does not parse. */
export function compileExpression(text: string): Expression {
  let expression = compiled.get(text);
  if (expression === undefined) {
    expression = jsonata(text);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(text, expression);
  }
  return expression;
}

async function evaluate(text: string, input: unknown): Promise<unknown> {
  const expression = compileExpression(text);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`expression took longer than ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
  });
  try {
    return await Promise.race([expression.evaluate(input), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether the endpoint wants this event; an expression that fails counts as no. */
export async function evaluateFilter(endpoint: EndpointRow, event: EventRow): Promise<boolean> {
  if (endpoint.filter === null) return true;
  try {
    const value = await evaluate(endpoint.filter, webhookPayload(event));
    return Array.isArray(value) ? value.length > 0 : Boolean(value);
  } catch {
    return false;
  }
}

/** The body the endpoint's transform makes of the event; throws when the transform fails on it. */
export async function transformBody(endpoint: EndpointRow, event: EventRow): Promise<unknown> {
  return (await evaluate(endpoint.transform!, webhookPayload(event))) ?? null;
}

/** Checks an expression when it is saved: undefined when it compiles, otherwise a message with the position. */
export function expressionProblem(text: string): string | undefined {
  try {
    jsonata(text);
    return undefined;
  } catch (error) {
    const e = error as { message?: string; position?: number };
    return `${e.message ?? 'invalid expression'}${e.position === undefined ? '' : ` (at character ${e.position})`}`;
  }
}
