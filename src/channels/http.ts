import { type Dispatcher, errors, request } from 'undici';
import { UnsafeAddressError } from '../delivery/ssrf.ts';

/*
 * What every HTTP sender (webhooks, chat, SMS, web push) needs of an answer or of its absence: the start of the
 * body for the attempt record, and a short reason when no answer came.
 */

/** How much of an answer is kept for the attempt record. */
export const RESPONSE_LIMIT = 2048;

/**
 * The start of a response body (at most {@link RESPONSE_LIMIT} bytes). The rest is not worth waiting for: the
 * body is dropped (and the connection with it) once enough has arrived.
 */
export async function readStart(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if (size >= RESPONSE_LIMIT) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, RESPONSE_LIMIT).toString('utf8');
}

/** The SSRF guard's refusal behind a failed request, if that is what it was. */
export function refusedAddress(error: unknown): UnsafeAddressError | undefined {
  for (let e: unknown = error; e instanceof Error; e = e.cause) {
    if (e instanceof UnsafeAddressError) return e;
  }
  return undefined;
}

/** Whether a request failed by running out of time (connecting, waiting for headers or body, or overall). */
export function timedOut(error: unknown): boolean {
  const e = error as Error;
  return (
    error instanceof errors.HeadersTimeoutError ||
    error instanceof errors.BodyTimeoutError ||
    error instanceof errors.ConnectTimeoutError ||
    e?.name === 'TimeoutError' ||
    e?.name === 'AbortError'
  );
}

/** A short reason for a request that got no answer: `refused: ...`, `timeout: ...` or `network: ...`. */
export function noAnswer(error: unknown, timeoutMs: number): string {
  const refused = refusedAddress(error);
  if (refused !== undefined) return `refused: ${refused.message}`;
  if (timedOut(error)) return `timeout: no answer within ${timeoutMs / 1000} s`;
  const e = error as Error;
  return `network: ${(e.cause instanceof Error ? e.cause.message : '') || e.message || String(error)}`.slice(
    0,
    500,
  );
}

/** What a peer answered: status, headers and the start of the body. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * POSTs `body` through the caller's (SSRF-guarded) agent within the timeout and reads the start of the answer.
 * Throws when no answer came; {@link noAnswer} says why.
 */
export async function post(
  url: string,
  headers: Record<string, string>,
  body: string | Buffer | undefined,
  options: { dispatcher: Dispatcher; timeoutMs: number },
): Promise<Answer> {
  const response = await request(url, {
    method: 'POST',
    dispatcher: options.dispatcher,
    headers,
    body,
    headersTimeout: options.timeoutMs,
    bodyTimeout: options.timeoutMs,
    signal: AbortSignal.timeout(options.timeoutMs),
  });
  return { status: response.statusCode, headers: response.headers, text: await readStart(response.body) };
}
