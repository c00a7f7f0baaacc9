import type { BlockList } from 'node:net';
import type { Agent } from 'undici';
import { type Provider, type ProviderOptions, result, type SendResult } from '../channels/channel.ts';
import { CHAT_KINDS, PROVIDER_KINDS, webPushProvider } from '../channels/registry.ts';
import type { Context } from '../context.ts';
import type { DeviceRow, ProviderRow } from '../db/tables.ts';
import type { Keys } from '../settings/keys.ts';
import type { Job } from './jobs.ts';
import { type AttemptResult, sendWebhook } from './webhook.ts';

/** One request to one provider (or endpoint) within an attempt. */
export interface Try {
  providerId: string | null;
  at: number;
  result: SendResult;
}

/** What an attempt came to: its final result, every try it took, and the devices found gone. */
export interface Sent {
  result: AttemptResult;
  tries: Try[];
  goneDevices: string[];
}

// biome-ignore lint/suspicious/noExplicitAny: providers of every address type share the cache
type AnyProvider = Provider<any>;

/**
 * Performs attempts. Holds one ready provider per configured provider row (rebuilt when the row changes), the
 * chat senders and the built-in web push sender, all sending through the SSRF-guarded agent.
 *
 * Failover: an email or SMS attempt goes to the channel's providers in priority order, skipping paused ones,
 * and moves to the next only when a provider is at fault (down, refusing our credentials, over quota), never
 * when the message itself is refused.
 */
export class Senders {
  readonly #ctx: Context;
  readonly #options: ProviderOptions & { allow: BlockList };
  readonly #providers = new Map<string, { version: number; provider: AnyProvider }>();
  readonly #chat = new Map<string, AnyProvider>();
  readonly #webPush: AnyProvider;

  constructor(ctx: Context, keys: Keys, agent: Agent, allow: BlockList) {
    this.#ctx = ctx;
    this.#options = {
      dispatcher: agent,
      timeoutMs: ctx.config.webhookTimeoutSeconds * 1000,
      now: () => ctx.clock.now(),
      publicUrl: ctx.config.publicUrl,
      allow,
    };
    this.#webPush = webPushProvider.create(
      webPushProvider.validate({ subject: ctx.config.vapidSubject, ...keys.vapid }),
      this.#options,
    );
  }

  async send(job: Job): Promise<Sent> {
    const target = job.target;
    const at = this.#ctx.clock.now();
    switch (target.kind) {
      case 'webhook': {
        const sent = await sendWebhook(
          {
            url: target.endpoint.url,
            secret: target.endpoint.secret,
            msgId: job.delivery.msg_id,
            body: target.body,
            at,
            headers: target.headers,
          },
          {
            dispatcher: this.#options.dispatcher,
            timeoutMs: this.#options.timeoutMs,
            now: this.#options.now,
          },
        );
        return { result: sent, tries: [{ providerId: null, at, result: sent }], goneDevices: [] };
      }
      case 'callback': {
        const sent = await sendWebhook(
          { url: target.url, secret: target.secret, msgId: job.delivery.msg_id, body: target.body, at },
          {
            dispatcher: this.#options.dispatcher,
            timeoutMs: this.#options.timeoutMs,
            now: this.#options.now,
          },
        );
        // A callback is no endpoint: a 410 or `webhook-delivery: disable` only ends this write-back.
        const final = { ...sent, disableEndpoint: null };
        return { result: final, tries: [{ providerId: null, at, result: sent }], goneDevices: [] };
      }
      case 'chat': {
        const sent = await this.#chatSender(target.endpoint.kind).send(target.message, target.endpoint.url);
        const final = { ...sent, disableEndpoint: sent.addressGone ? ('gone' as const) : null };
        return { result: final, tries: [{ providerId: null, at, result: sent }], goneDevices: [] };
      }
      case 'user':
        return this.#failover(target.providers, (provider) => provider.send(target.message, target.address));
      case 'push':
        return this.#push(target.message, target.devices, target.providers);
      case 'none': {
        const failed = result({ outcome: 'failed', latencyMs: 0, error: `not sent: ${target.reason}` });
        return {
          result: { ...failed, disableEndpoint: null },
          tries: [{ providerId: null, at, result: failed }],
          goneDevices: [],
        };
      }
    }
  }

  async close(): Promise<void> {
    const all = [...this.#providers.values()].map((p) => p.provider);
    await Promise.allSettled([...all, ...this.#chat.values(), this.#webPush].map((p) => p.close()));
  }

  async #failover(rows: ProviderRow[], send: (provider: AnyProvider) => Promise<SendResult>): Promise<Sent> {
    const now = this.#ctx.clock.now();
    const open = rows.filter((row) => row.paused_until === null || row.paused_until <= now);
    const tries: Try[] = [];
    if (open.length === 0) {
      const resume = Math.min(...rows.map((row) => row.paused_until ?? now));
      const paused = result({
        outcome: 'retry',
        latencyMs: 0,
        error: 'every provider of the channel is paused after repeated failures',
        retryAfterMs: Math.max(resume - now, 0),
      });
      return {
        result: { ...paused, disableEndpoint: null },
        tries: [{ providerId: null, at: now, result: paused }],
        goneDevices: [],
      };
    }
    for (const row of open) {
      const at = this.#ctx.clock.now();
      const sent = await this.#provider(row).then(send, (error: Error) =>
        result({
          outcome: 'retry',
          latencyMs: 0,
          providerFault: true,
          error: `provider unusable: ${error.message}`,
        }),
      );
      tries.push({ providerId: row.id, at, result: sent });
      if (sent.outcome === 'succeeded' || !sent.providerFault) break;
    }
    return { result: { ...tries.at(-1)!.result, disableEndpoint: null }, tries, goneDevices: [] };
  }

  /** Sends to every device of the user; succeeded when any device took it. */
  async #push(
    message: Job['target'] & { kind: 'push' } extends infer T
      ? T extends { message: infer M }
        ? M
        : never
      : never,
    devices: DeviceRow[],
    rows: ProviderRow[],
  ): Promise<Sent> {
    const outcomes = await Promise.all(
      devices.map(async (device) => {
        const at = this.#ctx.clock.now();
        const own = rows.filter((row) => row.kind === device.kind);
        if (device.kind === 'webpush') {
          const address = { endpoint: device.address, keys: JSON.parse(device.keys ?? '{}') as unknown };
          if (own.length > 0) {
            return {
              device,
              tries: (await this.#failover(own, (provider) => provider.send(message, address))).tries,
            };
          }
          return {
            device,
            tries: [{ providerId: null, at, result: await this.#webPush.send(message, address) }],
          };
        }
        const sent = await this.#failover(own, (provider) => provider.send(message, device.address));
        return { device, tries: sent.tries };
      }),
    );
    const finals = outcomes.map((o) => o.tries.at(-1)!.result);
    const succeeded = finals.find((r) => r.outcome === 'succeeded');
    const retry = finals.filter((r) => r.outcome === 'retry');
    const final =
      succeeded ??
      (retry.length > 0
        ? { ...retry[0]!, retryAfterMs: Math.max(...retry.map((r) => r.retryAfterMs ?? 0)) || null }
        : finals[0]!);
    return {
      result: { ...final, disableEndpoint: null },
      tries: outcomes.flatMap((o) => o.tries),
      goneDevices: outcomes.filter((o) => o.tries.at(-1)!.result.addressGone).map((o) => o.device.id),
    };
  }

  async #provider(row: ProviderRow): Promise<AnyProvider> {
    const cached = this.#providers.get(row.id);
    if (cached !== undefined && cached.version === row.updated_at) return cached.provider;
    if (cached !== undefined) void cached.provider.close();
    const kind = PROVIDER_KINDS.get(row.kind);
    if (kind === undefined) throw new Error(`unknown provider kind "${row.kind}"`);
    const provider = kind.create(kind.validate(JSON.parse(row.config)), this.#options);
    this.#providers.set(row.id, { version: row.updated_at, provider });
    return provider;
  }

  #chatSender(kind: string): AnyProvider {
    let sender = this.#chat.get(kind);
    if (sender === undefined) {
      const chat = CHAT_KINDS.get(kind);
      if (chat === undefined) throw new Error(`unknown endpoint kind "${kind}"`);
      sender = chat.create(chat.validate({}), this.#options);
      this.#chat.set(kind, sender);
    }
    return sender;
  }
}
