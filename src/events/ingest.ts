import { appendAudit } from '../audit/audit.repo.ts';
import type { Context } from '../context.ts';
import type { EventRow, NewEvent } from '../db/tables.ts';
import { HeraldError } from '../errors.ts';
import { newId } from '../ids.ts';
import { findExisting, insertEvents } from './events.repo.ts';
import type { IncomingEvent } from './normalize.ts';

/** What became of one submitted event. */
export type IngestResult =
  | { ok: true; id: string; externalId: string; duplicate: boolean; status: string }
  | { ok: false; error: HeraldError };

interface Waiting {
  rows: NewEvent[];
  resolve: (results: IngestResult[]) => void;
  reject: (error: unknown) => void;
}

// Largest number of events committed in one transaction.
const MAX_GROUP = 2_000;

/**
 * Stores events with group commit: requests that arrive while a commit is in progress wait and are written
 * together in the next transaction. Each caller's promise settles only after the commit that holds its
 * events, so a 202 always means "durably stored", yet a busy Herald pays one commit (one fsync) per group
 * rather than per event.
 */
export class Ingestor {
  readonly #ctx: Context;
  #queue: Waiting[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /**
   * Stores the events (one request's worth) and resolves with one result per event, in order. Each event's row
   * is made here, before it joins a group: an event that cannot be made into one fails alone.
   */
  submit(events: IncomingEvent[]): Promise<IngestResult[]> {
    if (this.#closed) return Promise.reject(new HeraldError('unavailable', 'Herald is shutting down'));
    const now = this.#ctx.clock.now();
    const built = events.map((event): NewEvent | HeraldError => {
      try {
        return eventRow(event, now);
      } catch (error) {
        this.#ctx.log.error({ err: error }, 'could not make an event into a row');
        return new HeraldError('internal', 'Herald could not store this event', { cause: error });
      }
    });
    const rows = built.filter((r): r is NewEvent => !(r instanceof HeraldError));
    const stored =
      rows.length === 0
        ? Promise.resolve([])
        : new Promise<IngestResult[]>((resolve, reject) => {
            this.#queue.push({ rows, resolve, reject });
            this.#flushing ??= this.#drain();
          });
    if (rows.length === built.length) return stored;
    return stored.then((results) => {
      let next = 0;
      return built.map((r) => (r instanceof HeraldError ? { ok: false, error: r } : results[next++]!));
    });
  }

  /** Waits for everything submitted to be committed, then refuses new work. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#flushing;
  }

  async #drain(): Promise<void> {
    // Let the requests that are already parsed join this group.
    await new Promise((r) => setImmediate(r));
    while (this.#queue.length > 0) {
      const group: Waiting[] = [];
      let size = 0;
      while (this.#queue.length > 0 && (size === 0 || size + this.#queue[0]!.rows.length <= MAX_GROUP)) {
        const next = this.#queue.shift()!;
        size += next.rows.length;
        group.push(next);
      }
      try {
        const results = await this.#commit(group.flatMap((w) => w.rows));
        let offset = 0;
        for (const waiting of group) {
          waiting.resolve(results.slice(offset, offset + waiting.rows.length));
          offset += waiting.rows.length;
        }
      } catch (error) {
        this.#ctx.log.error({ err: error }, 'could not store events');
        const failure = new HeraldError('unavailable', 'The events could not be stored; retry', {
          cause: error,
        });
        for (const waiting of group) waiting.reject(failure);
      }
    }
    this.#flushing = undefined;
  }

  async #commit(rows: NewEvent[]): Promise<IngestResult[]> {
    const { store, clock, metrics } = this.#ctx;
    const now = clock.now();
    const results = await store.transactDurably(async (trx) => {
      const inserted = await insertEvents(trx, rows);
      const out: IngestResult[] = [];
      const repeats = rows.filter((r) => !inserted.has(r.id));
      const existing = repeats.length > 0 ? await lookUpRepeats(trx, repeats) : () => undefined;
      for (const row of rows) {
        if (inserted.has(row.id)) {
          out.push({
            ok: true,
            id: row.id,
            externalId: row.external_id,
            duplicate: false,
            status: 'pending',
          });
          continue;
        }
        const found = existing(row);
        if (found === undefined) {
          // Collided with an event that is gone again (a concurrent transaction rolled back): ask for a retry.
          out.push({
            ok: false,
            error: new HeraldError('unavailable', 'The event could not be stored; retry'),
          });
        } else if (found.body_hash !== row.body_hash) {
          out.push({
            ok: false,
            error: new HeraldError(
              'idempotency_conflict',
              `Event "${row.idempotency_key ?? row.external_id}" was already accepted with a different body`,
              { extra: { id: found.id } },
            ),
          });
        } else {
          out.push({
            ok: true,
            id: found.id,
            externalId: found.external_id,
            duplicate: true,
            status: found.status,
          });
        }
      }
      await appendAudit(
        trx,
        rows
          .filter((r) => inserted.has(r.id))
          .map((r) => ({
            at: now,
            actor: `source:${r.source_id}` as const,
            action: 'event.ingested',
            subject_type: 'event',
            subject_id: r.id,
            data: { type: r.type, source_event_id: r.external_id },
          })),
      );
      return out;
    });
    for (const [i, result] of results.entries()) {
      if (result.ok)
        metrics.eventsIngested.inc({ source: rows[i]!.source_id, duplicate: String(result.duplicate) });
    }
    if (results.some((r) => r.ok && !r.duplicate)) store.notifier.publish('events', '');
    return results;
  }
}

/** Finds the stored events that the not-inserted rows collided with, by idempotency key or by source event id. */
async function lookUpRepeats(trx: Parameters<typeof findExisting>[0], repeats: NewEvent[]) {
  type Found = Awaited<ReturnType<typeof findExisting>>[number];
  const byKey = new Map<string, Found>();
  const byExternal = new Map<string, Found>();
  for (const [sourceId, list] of Map.groupBy(repeats, (r) => r.source_id)) {
    const keys = list.flatMap((r) => (r.idempotency_key ? [r.idempotency_key] : []));
    for (const row of await findExisting(
      trx,
      sourceId,
      list.map((r) => r.external_id as string),
      keys,
    )) {
      byExternal.set(`${sourceId}\u0000${row.external_id}`, row);
      if (row.idempotency_key !== null) byKey.set(`${sourceId}\u0000${row.idempotency_key}`, row);
    }
  }
  return (row: NewEvent): Found | undefined =>
    (row.idempotency_key === null ? undefined : byKey.get(`${row.source_id}\u0000${row.idempotency_key}`)) ??
    byExternal.get(`${row.source_id}\u0000${row.external_id}`);
}

/** The row an incoming event is stored as (with a new Herald id); explain routes one without storing it. */
export function eventRow(e: IncomingEvent, now: number): EventRow {
  const id = newId('evt', now);
  const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
  return {
    id,
    source_id: e.sourceId,
    external_id: e.externalId ?? e.idempotencyKey ?? id,
    idempotency_key: e.idempotencyKey ?? null,
    body_hash: e.bodyHash,
    format: e.format,
    type: e.type,
    subject: e.subject,
    time: e.time ?? now,
    severity: e.severity,
    title: e.title,
    summary: e.summary,
    url: e.url,
    due_at: e.dueAt,
    recipients: json(e.recipients),
    actions: json(e.actions),
    dedup_key: e.dedupKey,
    escalation: json(e.escalation),
    data: json(e.data),
    extensions: json(e.extensions),
    status: 'pending',
    received_at: now,
    routed_at: null,
    locked_until: 0,
    response_policy:
      e.responsePolicy === null || e.responsePolicy === 'first' ? null : json(e.responsePolicy),
    callback_url: e.callbackUrl,
    resolution: null,
    resolved_at: null,
    resolved_by: null,
  };
}
