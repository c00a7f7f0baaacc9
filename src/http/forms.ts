import type { App } from '../deps.ts';
import { HeraldError } from '../errors.ts';

/**
 * Makes this plugin scope take `application/x-www-form-urlencoded` bodies only, kept as the text sent: for a
 * provider that signs its form posts (Slack, Twilio), whose signature covers the parameters exactly as sent.
 * Any other content type gets 415, naming what `sender` sends.
 */
export function signedFormsOnly(app: App, sender: string): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_r, body, done) =>
    done(null, body),
  );
  app.addContentTypeParser('*', (_request, _payload, done) =>
    done(new HeraldError('unsupported_media_type', `${sender} sends application/x-www-form-urlencoded`)),
  );
}
