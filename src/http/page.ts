import type { FastifyReply, FastifyRequest } from 'fastify';
import { ERRORS, type HeraldError } from '../errors.ts';

/** Sends a small self-contained HTML page (no scripts; forms may only post back to Herald). */
export function htmlPage(reply: FastifyReply, status: number, title: string, body: string) {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('cache-control', 'no-store')
    .header('referrer-policy', 'no-referrer')
    .header('x-robots-tag', 'noindex')
    .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'")
    .send(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem}.note{color:#555}textarea{width:100%}</style>
</head>
<body>
<h1>${escapeHtml(title)}</h1>
${body}
</body>
</html>
`);
}

/** Whether the request comes from a browser (it accepts HTML), which gets pages rather than problem+json. */
export const wantsHtml = (request: FastifyRequest): boolean =>
  /\btext\/html\b/.test(request.headers.accept ?? '');

/** An error as a page for a browser; for anyone else it is thrown on, to become problem+json. */
export function refuse(request: FastifyRequest, reply: FastifyReply, error: HeraldError) {
  if (!wantsHtml(request)) throw error;
  return htmlPage(reply, error.status, ERRORS[error.code].title, `<p>${escapeHtml(error.message)}</p>`);
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
