import type { Insertable, Transaction } from 'kysely';
import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import { publishIds } from '../db/notifier.ts';
import type { AnnouncementRow, Database } from '../db/tables.ts';
import { newNotification } from '../notifications/notifications.repo.ts';
import { HERALD_SOURCE } from '../ops/alerts.ts';
import { insertNotifications } from '../routing/routing.repo.ts';
import { type TickResult, WorkerLoop } from '../worker.ts';
import {
  ANNOUNCEMENT_TYPE,
  claimDue,
  LIVE,
  nextDue,
  updateAnnouncement,
  withdrawNotifications,
} from './announcements.repo.ts';
import { type Audience, audiencePage, countAudience } from './audience.ts';

/** Users per fan-out (or withdrawal) transaction; progress is committed after each. */
const CHUNK = 5_000;
const POLL_MS = 1_000;
const LEASE_MS = 15_000;
// Work is due but was not claimable: another node holds it. Look again soon, without spinning.
const HELD_ELSEWHERE_MS = 100;

interface StepResult {
  created: number;
  /** Users whose inbox changed. */
  users: string[];
}

/**
 * Publishes announcements on time, fans each out to its audience in chunks, and takes it out of inboxes
 * when it expires or is cancelled. One step (one chunk of one announcement) is one transaction: the claim,
 * the notifications and the progress commit together, so a crash resumes from the last committed cursor
 * without duplicates (and the unique (event, user) index would refuse any). On PostgreSQL the claimed row
 * stays locked until the commit, so one node works on an announcement at a time.
 */
export class Publisher {
  readonly #ctx: Context;
  readonly #loop: WorkerLoop;
  readonly #chunk: number;

  constructor(ctx: Context, options: { chunkSize?: number } = {}) {
    this.#ctx = ctx;
    this.#chunk = options.chunkSize ?? CHUNK;
    // Woken when an announcement is created or cancelled.
    this.#loop = new WorkerLoop('publisher', ctx, () => this.#tick(), POLL_MS, { wakeOn: 'announcements' });
  }

  start(): void {
    this.#loop.start();
  }

  stop(): Promise<void> {
    return this.#loop.stop();
  }

  /** Does one step of the announcement whose work is due first; returns 1, or 0 when nothing was due. */
  async runOnce(): Promise<number> {
    const { store, clock, metrics } = this.#ctx;
    const now = clock.now();
    const result = await store.db.transaction().execute(async (trx) => {
      const claimed = await claimDue(store, trx, now, now + LEASE_MS);
      return claimed === undefined ? undefined : this.#step(trx, claimed, now);
    });
    if (result === undefined) return 0;
    metrics.notificationsCreated.inc(result.created);
    publishIds(store.notifier, 'inbox', result.users);
    return 1;
  }

  async #tick(): Promise<TickResult> {
    if ((await this.runOnce()) > 0) return 'busy';
    const due = await nextDue(this.#ctx.store.db);
    if (due === undefined) return POLL_MS;
    const delay = due - this.#ctx.clock.now();
    return delay > 0 ? delay : HELD_ELSEWHERE_MS;
  }

  async #step(trx: Transaction<Database>, claimed: AnnouncementRow, now: number): Promise<StepResult> {
    let row = claimed;
    // Expiry wins over anything still to publish.
    if (LIVE.includes(row.status) && row.expires_at !== null && row.expires_at <= now) {
      row = await this.#end(trx, row, now);
    }
    if (row.status === 'scheduled') row = await this.#begin(trx, row, now);
    switch (row.status) {
      case 'publishing':
        return this.#fanOut(trx, row, now);
      case 'expired':
      case 'cancelled':
        return this.#withdraw(trx, row, now);
      default:
        // Published and not yet expired (a clock moved back): wait for the expiry again.
        await updateAnnouncement(trx, row.id, { due_at: row.expires_at, locked_until: 0 });
        return { created: 0, users: [] };
    }
  }

  /** Publish time: counts the audience as the directory is now and starts the fan-out. */
  async #begin(trx: Transaction<Database>, row: AnnouncementRow, now: number): Promise<AnnouncementRow> {
    const total = await countAudience(trx, audienceOf(row));
    return (await updateAnnouncement(trx, row.id, {
      status: 'publishing',
      total,
      cursor: null,
      updated_at: now,
    }))!;
  }

  /** Creates the notifications of the next chunk of the audience and commits the progress with them. */
  async #fanOut(trx: Transaction<Database>, row: AnnouncementRow, now: number): Promise<StepResult> {
    const page = await audiencePage(trx, audienceOf(row), row.cursor ?? undefined, this.#chunk);
    let created = 0;
    if (page.members.length > 0) {
      const first = await this.#ctx.store.allocateSeq(trx, page.members.length);
      const notifications = page.members.map((userId, i) => notificationRow(row, userId, first + i, now));
      created = await insertNotifications(trx, notifications);
    }
    const delivered = row.delivered + created;
    const done = page.next === undefined;
    await updateAnnouncement(trx, row.id, {
      delivered,
      // Counted at publish time; the directory may have changed since, and the fan-out is what happened.
      total: done ? delivered : Math.max(row.total, delivered),
      cursor: done ? null : page.next,
      status: done ? 'published' : 'publishing',
      due_at: done ? row.expires_at : now,
      published_at: done ? now : null,
      locked_until: 0,
      updated_at: now,
    });
    if (done) await this.#published(trx, row, delivered, now);
    return { created, users: page.members };
  }

  async #published(trx: Transaction<Database>, row: AnnouncementRow, delivered: number, now: number) {
    await trx.updateTable('events').set({ routed_at: now }).where('id', '=', row.event_id).execute();
    const audience = audienceOf(row);
    await appendAudit(trx, [
      {
        at: now,
        actor: 'system',
        action: 'announcement.published',
        subject_type: 'announcement',
        subject_id: row.id,
        data: { delivered },
      },
      {
        // `GET /v1/events/{id}` shows who the announcement's event reached from this entry.
        at: now,
        actor: 'system',
        action: 'event.routed',
        subject_type: 'event',
        subject_id: row.event_id,
        data: { recipient_count: delivered, via: `announcement:${row.id}`, audience },
      },
    ]);
  }

  async #end(trx: Transaction<Database>, row: AnnouncementRow, now: number): Promise<AnnouncementRow> {
    await appendAudit(trx, {
      at: now,
      actor: 'system',
      action: 'announcement.expired',
      subject_type: 'announcement',
      subject_id: row.id,
      data: { delivered: row.delivered },
    });
    return (await updateAnnouncement(trx, row.id, {
      status: 'expired',
      cursor: null,
      due_at: now,
      ended_at: now,
      updated_at: now,
    }))!;
  }

  /** Takes the next chunk of a cancelled or expired announcement's notifications out of inboxes. */
  async #withdraw(trx: Transaction<Database>, row: AnnouncementRow, now: number): Promise<StepResult> {
    const allocate = () => this.#ctx.store.allocateSeq(trx, 1);
    const { next, changed } = await withdrawNotifications(
      trx,
      row.event_id,
      row.cursor,
      this.#chunk,
      allocate,
      now,
    );
    await updateAnnouncement(trx, row.id, {
      removed: row.removed + changed.length,
      cursor: next ?? null,
      due_at: next === undefined ? null : now,
      locked_until: 0,
      updated_at: now,
    });
    return { created: 0, users: changed };
  }
}

const audienceOf = (row: AnnouncementRow) => JSON.parse(row.audience) as Audience;

function notificationRow(
  row: AnnouncementRow,
  userId: string,
  seq: number,
  now: number,
): Insertable<Database['notifications']> {
  return newNotification(
    {
      event_id: row.event_id,
      user_id: userId,
      source_id: HERALD_SOURCE,
      type: ANNOUNCEMENT_TYPE,
      severity: row.severity,
      title: row.title,
      summary: row.body,
      url: row.url,
      channels: ['inapp'],
    },
    now,
    seq,
  );
}
