import { apnsProvider } from './apns.ts';
import type { ProviderKind } from './channel.ts';
import { smtpProvider } from './email.ts';
import { fcmProvider } from './fcm.ts';
import { slackProvider } from './slack.ts';
import { twilioProvider } from './sms.ts';
import { teamsProvider } from './teams.ts';
import { webPushProvider } from './webpush.ts';

/** Channels that reach a person (besides the inbox, which needs no sending). */
export const USER_CHANNELS = ['email', 'push', 'sms'] as const;
export type UserChannel = (typeof USER_CHANNELS)[number];

/** Every channel a rule may name. */
export const RULE_CHANNELS: readonly string[] = ['inapp', ...USER_CHANNELS];

export function isUserChannel(channel: string): channel is UserChannel {
  return (USER_CHANNELS as readonly string[]).includes(channel);
}

/**
 * Seconds between attempts after the first, per channel. A person's channels give up sooner than a system's
 * webhook: a message that arrives a day late is noise. Webhooks and chat use the configured schedule
 * (Standard Webhooks' by default).
 */
export const RETRY_SCHEDULES: Readonly<Record<UserChannel, readonly number[]>> = {
  email: [30, 120, 600, 1800, 3600, 3 * 3600, 6 * 3600],
  push: [10, 60, 300, 1800, 7200],
  sms: [30, 120, 600, 3600],
};

/** Requests in flight at once per user channel on one node (over all its providers). */
export const CHANNEL_CONCURRENCY: Readonly<Record<UserChannel, number>> = { email: 32, push: 64, sms: 16 };

// biome-ignore lint/suspicious/noExplicitAny: the registry holds kinds of every config and address type
type AnyKind = ProviderKind<any, any>;

/**
 * Provider kinds an operator can configure, by `kind`. Web push works without one (Herald generates and keeps
 * a VAPID key pair); a `webpush` provider replaces those keys with the operator's own.
 */
export const PROVIDER_KINDS: ReadonlyMap<string, AnyKind> = new Map<string, AnyKind>([
  [smtpProvider.kind, smtpProvider],
  [webPushProvider.kind, webPushProvider],
  [twilioProvider.kind, twilioProvider],
  [fcmProvider.kind, fcmProvider],
  [apnsProvider.kind, apnsProvider],
]);

/** Senders for endpoint kinds other than `webhook` (chat). */
export const CHAT_KINDS: ReadonlyMap<string, AnyKind> = new Map<string, AnyKind>([
  [slackProvider.kind, slackProvider],
  [teamsProvider.kind, teamsProvider],
]);

export { webPushProvider };
