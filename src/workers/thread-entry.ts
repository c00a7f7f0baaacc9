import { parentPort, workerData } from 'node:worker_threads';
import { systemClock } from '../clock.ts';
import type { Context } from '../context.ts';
import { openStore } from '../db/engine.ts';
import { threadLogger } from '../log.ts';
import { createMetrics, type MetricsSnapshot } from '../metrics.ts';
import { type FromThread, type ThreadData, type ToThread, threadName } from './thread.ts';
import { Workers } from './workers.ts';

/*
 * A workers' thread (see thread.ts): opens its own connection to the database the HTTP thread migrated,
 * runs its share of the workers, answers metrics requests, and on `stop` finishes the work in flight and ends.
 */

const port = parentPort!;
const { config, threadLock, share } = workerData as ThreadData;
const log = threadLogger(config, threadName(share));
const store = openStore(config.databaseUrl, {
  threadLock,
  onError: (error) => log.error({ err: error }, 'database'),
});
const ctx: Context = {
  config,
  store,
  clock: systemClock,
  log,
  metrics: createMetrics({ processMetrics: false }),
};
const workers = new Workers(ctx);
const send = (message: FromThread) => port.postMessage(message);

port.on('message', (message: ToThread) => {
  if (message.kind === 'metrics') {
    void ctx.metrics.registry.getMetricsAsJSON().then((snapshot) => {
      send({ kind: 'metrics', id: message.id, snapshot: snapshot as MetricsSnapshot });
    });
    return;
  }
  void workers
    .stop()
    .then(() => store.close())
    .then(() => {
      send({ kind: 'stopped' });
      port.close();
    });
});

log.info({ workers: workers.start(share) }, 'workers started');
send({ kind: 'started' });
