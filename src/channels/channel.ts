import type { Dispatcher } from 'undici';

/*
 * Glossary
 * - channel: how a person or system is reached: `email`, `push` (web push and mobile), `sms`, or an outbound
 *   endpoint (`webhook`, `slack`, `teams`). `inapp` is the inbox and needs no sending.
 * - provider: one configured way of sending on a channel (an SMTP relay, an SMS provider, FCM, APNs, the
 *   web push service of a browser). A channel may have several, tried in priority order (failover).
 * - address: where one message goes on a provider: an email address, a phone number, a device token, a web
 *   push subscription, a chat webhook URL.
 * - message: what is sent, already rendered for the recipient (templates, locale, links).
 */

export type Severity = 'info' | 'warning' | 'error' | 'critical';

/** A button or link a message offers. `url` opens the record or performs the action (signed link). */
export interface MessageAction {
  id: string;
  label: string;
  url: string | null;
}

/** One notification rendered for one recipient and channel. */
export interface Message {
  /** Stable across every attempt and provider: use it for idempotency, collapse ids and topics. */
  id: string;
  eventId: string;
  notificationId: string | null;
  /** The event type (`po.approval_requested`); also the preference category. */
  type: string;
  severity: Severity;
  /** Subject line / notification title; plain text. */
  title: string;
  /** Plain text body. */
  text: string;
  /** HTML body, for email; null when there is none. */
  html: string | null;
  /** Link back to the record in the source system. */
  url: string | null;
  actions: MessageAction[];
  /** BCP 47 locale of the recipient, when known. */
  locale: string | null;
  /** One-click unsubscribe URL (RFC 8058) for non-critical email; null otherwise. */
  unsubscribeUrl: string | null;
  /** When the message stops being worth delivering (push TTL / apns-expiration); epoch ms. */
  expiresAt: number | null;
  /** Free key/values every channel may pass on (FCM data, web push payload). Strings only. */
  data: Record<string, string>;
}

/** What one attempt on one provider came to. Providers never throw: every failure is a result. */
export interface SendResult {
  /** `succeeded` (accepted by the peer), `retry` (try again later) or `failed` (never retry this message). */
  outcome: 'succeeded' | 'retry' | 'failed';
  /** HTTP status, or the SMTP reply code; null when no answer came. */
  statusCode: number | null;
  latencyMs: number;
  /** The start of the peer's answer (at most 2 KiB), for the attempt record. */
  response: string | null;
  /** A short reason, starting with the peer's error code when it gave one (`UNREGISTERED: ...`). */
  error: string | null;
  /** Wait at least this long before the next attempt (`Retry-After`, quota back-off). */
  retryAfterMs: number | null;
  /**
   * The address is no longer valid (web push 404/410, FCM UNREGISTERED, APNs BadDeviceToken/Unregistered, an
   * SMS number the provider says cannot receive): Herald removes it and does not retry.
   */
  addressGone: boolean;
  /**
   * The fault lies with the provider, not the message (connection refused, authentication, 5xx, quota): it
   * counts against the provider's circuit and the next provider of the channel is tried.
   */
  providerFault: boolean;
  /** The peer's id for the accepted message, when it returns one. */
  providerMessageId: string | null;
}

/** Shared by every provider. */
export interface ProviderOptions {
  /** The SSRF-guarded agent for outbound HTTP (from `createOutboundAgent`). */
  dispatcher: Dispatcher;
  /** Per-attempt timeout. */
  timeoutMs: number;
  /** Now in epoch milliseconds (a controllable clock in tests). */
  now: () => number;
  /** Herald's public URL, for providers that call Herald back (SMS status callbacks). */
  publicUrl?: string;
}

/** A configured provider, ready to send. */
export interface Provider<Address> {
  send(message: Message, address: Address): Promise<SendResult>;
  /** Releases connections (SMTP pools, HTTP/2 sessions). */
  close(): Promise<void>;
}

/** A provider configuration that cannot be used; `path` points at the field (`/private_key`). */
export class ChannelConfigError extends Error {
  override name = 'ChannelConfigError';
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }
}

/** A result with the defaults filled in. */
export function result(fields: Partial<SendResult> & Pick<SendResult, 'outcome' | 'latencyMs'>): SendResult {
  return {
    statusCode: null,
    response: null,
    error: null,
    retryAfterMs: null,
    addressGone: false,
    providerFault: false,
    providerMessageId: null,
    ...fields,
  };
}

/** The first `limit` characters of a peer's answer, for the attempt record. */
export function truncate(text: string | null | undefined, limit = 2048): string | null {
  if (text === null || text === undefined || text === '') return null;
  return text.length > limit ? text.slice(0, limit) : text;
}

/**
 * One kind of provider (`smtp`, `twilio`, `webpush`, `fcm`, `apns`, `slack`, `teams`): how its configuration is
 * checked when saved, shown without secrets, and turned into a {@link Provider}.
 */
export interface ProviderKind<Config, Address> {
  readonly kind: string;
  /** The channel it serves. */
  readonly channel: 'email' | 'sms' | 'push' | 'chat';
  /** Checks a configuration as given through the API and returns it normalised; throws {@link ChannelConfigError}. */
  validate(config: unknown): Config;
  /** The configuration as the API shows it: secrets replaced by `"********"` (or left out). */
  redact(config: Config): Record<string, unknown>;
  create(config: Config, options: ProviderOptions): Provider<Address>;
}
