import type { Store } from '../db/engine.ts';
import type { App, Deps } from '../deps.ts';
import { FLUSH_TIMER, flushHandler } from './flush.ts';
import { inhibitionsRoutes } from './inhibitions.routes.ts';
import { silencesRoutes } from './silences.routes.ts';
import type { TimerHandler } from './timers.ts';

/*
 * Noise control, wired into Herald: the routes (silences, inhibitions) and the timer handlers (bucket
 * flushes). Routing applies it through `applyNoise` (apply.ts); explain asks `explainNoise` (judge.ts).
 */

/** `/silences` and `/inhibitions` (admin). */
export async function noiseRoutes(app: App, deps: Deps): Promise<void> {
  await silencesRoutes(app, deps);
  await inhibitionsRoutes(app, deps);
}

/** The timer handlers noise control needs, for the app's {@link TimerWorker}. */
export function noiseTimerHandlers(store: Store): Record<string, TimerHandler> {
  return { [FLUSH_TIMER]: flushHandler(store) };
}
