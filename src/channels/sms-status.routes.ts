import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { Db } from '../db/engine.ts';
import type { App, Deps } from '../deps.ts';
import { HeraldError, invalidMany } from '../errors.ts';
import { signedFormsOnly } from '../http/forms.ts';
import { findDeliveryByProviderRef, type Receipt, recordReceipt } from './receipts.ts';
import {
  isTwilioSigned,
  type SmsConfig,
  STATUS_CALLBACK_ROUTE,
  statusCallbackUrl,
  twilioProvider,
} from './sms.ts';

/*
 * Twilio's status callbacks (twilio.com/docs/messaging/guides/track-outbound-message-status): for each message
 * sent with a `StatusCallback`, Twilio POSTs the message's progress as a form. There is no bearer token: the
 * `X-Twilio-Signature` under the auth token of the account named by `AccountSid` is the authentication.
 */

// Only the end of the road counts; `queued`, `sending`, `sent` and the like repeat what the send's answer said.
const DELIVERED = new Set(['delivered']);
const FAILED = new Set(['undelivered', 'failed']);

/** What the common carrier errors of an undelivered message mean (twilio.com/docs/api/errors/30001 ...). */
const CARRIER_ERRORS: Record<string, string> = {
  '30001': 'Queue overflow',
  '30002': 'Account suspended',
  '30003': 'Unreachable destination handset',
  '30004': 'Message blocked',
  '30005': 'Unknown destination handset',
  '30006': 'Landline or unreachable carrier',
  '30007': 'Message filtered by the carrier',
  '30008': 'Unknown error',
};

const Form = Type.String({
  description:
    '`application/x-www-form-urlencoded`: `MessageSid`, `MessageStatus`, `AccountSid`, `ErrorCode` (on failures), `To`, ...',
});

/** A status callback as Twilio posts it. */
interface StatusCallback {
  params: URLSearchParams;
  messageSid: string;
  status: string;
  accountSid: string;
  errorCode: string | null;
}

/** `POST /v1/integrations/sms/status`: Twilio's delivery receipts (no bearer token; the signature authenticates). */
export async function smsStatusRoutes(app: App, deps: Deps): Promise<void> {
  // The signature covers the form as sent: it is parsed only once verified.
  signedFormsOnly(app, 'Twilio');

  app.post(
    STATUS_CALLBACK_ROUTE,
    {
      schema: {
        tags: ['providers'],
        summary: "Twilio's status callback: an SMS was delivered, or the carrier gave up on it",
        description:
          "Herald names this URL as the `StatusCallback` of every SMS (or the provider's `status_callback`). " +
          'Signed by Twilio (`X-Twilio-Signature`, under the auth token of the provider whose `account_sid` is ' +
          'the `AccountSid`); an unsigned or wrongly signed request gets 403. `delivered` shows the SMS as ' +
          'delivered on its notification; `undelivered` and `failed` mark it failed with the `ErrorCode` and try ' +
          "the rule's fallback channel. Other statuses and unknown messages are answered 204 and ignored.",
        consumes: ['application/x-www-form-urlencoded'],
        body: Form,
        response: { 204: Type.Null({ description: 'Taken (or nothing to do)' }) },
      },
    },
    async (request, reply) => {
      const callback = parseCallback(request.body as string);
      const providerIds = await signedBy(deps.store.db, deps.config.publicUrl, request, callback);
      if (providerIds.length === 0) {
        throw new HeraldError('forbidden', 'The request is not signed by Twilio for a configured account');
      }
      const receipt = toReceipt(callback);
      if (receipt !== null) {
        const delivery = await findDeliveryByProviderRef(deps.store.db, callback.messageSid, providerIds);
        // An unknown message is still answered 2xx: Twilio would otherwise retry a callback that cannot succeed.
        if (delivery !== undefined) await recordReceipt(deps, delivery, receipt);
      }
      return reply.code(204).send(null);
    },
  );
}

/** The callback's fields; 400 when one Herald needs is missing or not what Twilio sends. */
function parseCallback(body: string): StatusCallback {
  const params = new URLSearchParams(body);
  const field = (name: string) => params.get(name)?.trim() || null;
  const messageSid = field('MessageSid');
  const status = field('MessageStatus');
  const accountSid = field('AccountSid');
  const errorCode = field('ErrorCode');
  const problems = [
    ...(messageSid === null ? [{ field: 'MessageSid', message: 'is required' }] : []),
    ...(status === null ? [{ field: 'MessageStatus', message: 'is required' }] : []),
    ...(accountSid === null ? [{ field: 'AccountSid', message: 'is required' }] : []),
    ...(errorCode !== null && !/^\d{1,10}$/.test(errorCode)
      ? [{ field: 'ErrorCode', message: 'must be a Twilio error code (digits)' }]
      : []),
  ];
  if (problems.length > 0) throw invalidMany(problems);
  return {
    params,
    messageSid: messageSid!,
    status: status!.toLowerCase(),
    accountSid: accountSid!,
    errorCode,
  };
}

/**
 * The ids of the Twilio providers of the callback's account whose auth token signed it. Twilio signs the URL it
 * called, which is the `StatusCallback` each provider sends: its own `status_callback`, or Herald's public URL.
 */
async function signedBy(
  db: Db,
  publicUrl: string,
  request: FastifyRequest,
  callback: StatusCallback,
): Promise<string[]> {
  const header = request.headers['x-twilio-signature'];
  const signature = Array.isArray(header) ? header[0] : header;
  if (signature === undefined || signature === '') return [];
  const rows = await db
    .selectFrom('providers')
    .select(['id', 'config'])
    .where('kind', '=', twilioProvider.kind)
    .execute();
  const signed: string[] = [];
  for (const row of rows) {
    const config = readConfig(row.config);
    if (config === null || config.account_sid !== callback.accountSid) continue;
    const url = statusCallbackUrl(config, publicUrl)!;
    if (isTwilioSigned(config.auth_token, url, callback.params, signature)) signed.push(row.id);
  }
  return signed;
}

/** A stored configuration, or null when it no longer passes the checks (it cannot have sent anything then). */
function readConfig(text: string): SmsConfig | null {
  try {
    return twilioProvider.validate(JSON.parse(text));
  } catch {
    return null;
  }
}

/** What a final status means for the delivery; null for the statuses on the way there. */
function toReceipt(callback: StatusCallback): Receipt | null {
  const reported = { status: callback.status, error_code: callback.errorCode };
  if (DELIVERED.has(callback.status)) {
    return { outcome: 'delivered', error: null, providerRef: callback.messageSid, reported };
  }
  if (!FAILED.has(callback.status)) return null;
  const code = callback.errorCode;
  const after = `the provider reported it ${callback.status} after accepting it`;
  const error =
    code === null
      ? `${callback.status}: ${after}`
      : `${code}: ${CARRIER_ERRORS[code] ?? `twilio.com/docs/api/errors/${code}`} (${after})`;
  return { outcome: 'failed', error, providerRef: callback.messageSid, reported };
}
