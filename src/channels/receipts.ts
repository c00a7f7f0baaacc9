import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { Db } from '../db/engine.ts';
import type { DeliveryRow } from '../db/tables.ts';
import { insertFallbacks } from '../delivery/fallback.ts';

/*
 * Delivery receipts: what a provider reports about a message after it accepted it (Twilio's status callbacks).
 * The attempt that was accepted keeps the provider's id for the message (`provider_ref`); a receipt naming that
 * id moves its delivery from `succeeded` (accepted) to delivered, or to dead when the carrier gave up on it.
 */

/** What a provider reported about a message it had accepted. */
export interface Receipt {
  /** `delivered`: handed to the device; `failed`: the carrier refused or lost it after the provider took it. */
  outcome: 'delivered' | 'failed';
  /** Why it failed, starting with the provider's error code when it gave one (`30003: ...`). */
  error: string | null;
  /** The provider's id for the message (Twilio's `SM…` sid). */
  providerRef: string;
  /** What the provider said, as reported (for the audit log). */
  reported: Record<string, string | null>;
}

/**
 * The delivery whose attempt on one of `providerIds` was accepted under `providerRef`. Only those providers'
 * messages count: an account's callbacks never reach a message another account sent.
 */
export async function findDeliveryByProviderRef(
  db: Db,
  providerRef: string,
  providerIds: readonly string[],
): Promise<DeliveryRow | undefined> {
  if (providerIds.length === 0) return undefined;
  return db
    .selectFrom('attempts')
    .innerJoin('deliveries', 'deliveries.id', 'attempts.delivery_id')
    .selectAll('deliveries')
    .where('attempts.provider_ref', '=', providerRef)
    .where('attempts.provider_id', 'in', [...providerIds])
    .limit(1)
    .executeTakeFirst();
}

/**
 * Records a receipt on its delivery: delivered (a timestamp), or dead with the reason and, when the delivery
 * has a fallback chain, a delivery on the next channel. In the same transaction the notification takes a new
 * stream position (so open inbox streams show it changed) and the audit log gets the outcome. A delivery that
 * is not `succeeded` and undelivered any more (a repeated or late receipt) is left alone. Returns whether it
 * changed.
 */
export async function recordReceipt(ctx: Context, delivery: DeliveryRow, receipt: Receipt): Promise<boolean> {
  const { store } = ctx;
  const now = ctx.clock.now();
  const result = await store.db.transaction().execute(async (trx) => {
    const updated = await trx
      .updateTable('deliveries')
      .set(
        receipt.outcome === 'delivered'
          ? { delivered_at: now, updated_at: now }
          : { status: 'dead', last_error: receipt.error, updated_at: now, completed_at: now },
      )
      .where('id', '=', delivery.id)
      .where('status', '=', 'succeeded')
      .where('delivered_at', 'is', null)
      .returningAll()
      .executeTakeFirst();
    if (updated === undefined) return undefined;
    const followUps = receipt.outcome === 'failed' ? await insertFallbacks(trx, [updated], now) : 0;
    if (updated.notification_id !== null) {
      const seq = await store.allocateSeq(trx, 1);
      await trx
        .updateTable('notifications')
        .set({ seq, updated_at: now })
        .where('id', '=', updated.notification_id)
        .execute();
    }
    await appendAudit(trx, {
      at: now,
      actor: 'system',
      action: receipt.outcome === 'delivered' ? 'delivery.delivered' : 'delivery.undelivered',
      subject_type: 'delivery',
      subject_id: updated.id,
      data: {
        channel: updated.channel,
        notification_id: updated.notification_id,
        event_id: updated.event_id,
        provider_id: updated.provider_id,
        provider_ref: receipt.providerRef,
        ...receipt.reported,
        ...(receipt.outcome === 'failed' ? { error: receipt.error, fallback: followUps > 0 } : {}),
      },
    });
    return { updated, followUps };
  });
  if (result === undefined) return false;
  if (result.updated.user_id !== null) store.notifier.publish('inbox', result.updated.user_id);
  if (result.followUps > 0) store.notifier.publish('deliveries', '');
  return true;
}
