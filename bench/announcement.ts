import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startHerald } from './processes.ts';
import { sampleResources } from './resources.ts';
import { api } from './setup.ts';

/** An announcement to everyone in a directory of `users`, on a fresh Herald. */
export interface AnnouncementFigures {
  users: number;
  /** Creating the directory through `POST /v1/users/bulk`. */
  bulk_s: number;
  /** The `POST /v1/announcements` request alone (it counts the audience). */
  post_ms: number;
  /** From sending the POST to the status `published`, every notification committed. */
  publish_s: number;
  notifications: number;
  notifications_per_s: number;
  /** Distinct `progress.delivered` values seen while polling (more than two: progress was visible). */
  progress_steps: number;
  /** A sampled user's inbox lists the announcement first. */
  inbox_ok: boolean;
  /** CPU of Herald from the POST to `published`, 100 = one core. */
  herald_cpu_percent: number;
  /** Herald's peak RSS over its life (directory load included). */
  herald_peak_rss_mib: number;
}

export interface AnnouncementOptions {
  users: number;
  /** Most time to wait for `published` after the POST. */
  timeoutS: number;
}

// Users per bulk request: the most the API takes.
const BULK_SIZE = 10_000;
const POLL_MS = 25;

/**
 * Bulk-creates the directory, announces to everyone and polls the announcement's progress until it is
 * published; then checks one user's inbox.
 */
export async function measureAnnouncement(options: AnnouncementOptions): Promise<AnnouncementFigures> {
  const herald = await startHerald();
  try {
    const admin = herald.adminToken;
    const bulkStarted = performance.now();
    for (let first = 0; first < options.users; first += BULK_SIZE) {
      const count = Math.min(BULK_SIZE, options.users - first);
      const users = Array.from({ length: count }, (_, i) => {
        const n = first + i;
        return {
          id: `a${String(n).padStart(6, '0')}`,
          name: `Reader ${n}`,
          attributes: { site: `s${n % 20}` },
        };
      });
      await api(herald.url, 'POST', '/v1/users/bulk', admin, { users });
    }
    const bulk_s = (performance.now() - bulkStarted) / 1000;

    const usage = sampleResources(herald.pid);
    const started = performance.now();
    const created = await api<{ id: string; event_id: string }>(
      herald.url,
      'POST',
      '/v1/announcements',
      admin,
      {
        audience: { everyone: true },
        title: 'Planned maintenance on Saturday',
        body: 'The ERP is unavailable from 08:00 to 12:00 UTC.',
      },
    );
    const post_ms = performance.now() - started;
    const seen = new Set<number>();
    let state: { status: string; progress: { total: number; delivered: number } };
    for (;;) {
      state = await api(herald.url, 'GET', `/v1/announcements/${created.id}`, admin);
      seen.add(state.progress.delivered);
      if (state.status === 'published') break;
      if (performance.now() - started > options.timeoutS * 1000) {
        throw new Error(`not published within ${options.timeoutS} s: ${JSON.stringify(state)}`);
      }
      await sleep(POLL_MS);
    }
    const publish_s = (performance.now() - started) / 1000;
    const { cpu_percent, peak_rss_mib } = usage.stop();

    const sample = `a${String(Math.floor(options.users / 2)).padStart(6, '0')}`;
    const { token } = await api<{ token: string }>(
      herald.url,
      'POST',
      `/v1/users/${sample}/tokens`,
      admin,
      {},
    );
    const inbox = await api<{ items: { event_id: string; type: string }[] }>(
      herald.url,
      'GET',
      '/v1/me/notifications?limit=1',
      token,
    );
    const first = inbox.items[0];
    return {
      users: options.users,
      bulk_s: round(bulk_s),
      post_ms: Math.round(post_ms),
      publish_s: round(publish_s),
      notifications: state.progress.delivered,
      notifications_per_s: Math.round(state.progress.delivered / publish_s),
      progress_steps: seen.size,
      inbox_ok: first?.event_id === created.event_id && first.type === 'herald.announcement',
      herald_cpu_percent: cpu_percent,
      herald_peak_rss_mib: peak_rss_mib,
    };
  } finally {
    await herald.stop();
  }
}

const round = (n: number) => Math.round(n * 100) / 100;
