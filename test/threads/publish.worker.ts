import { workerData } from 'node:worker_threads';
import { openStore } from '../../src/db/engine.ts';

/* A second thread for test/sqlite-threads.test.ts: opens the same file and publishes two wake-ups. */
const { path, lock } = workerData as { path: string; lock: SharedArrayBuffer };
const store = openStore(path, { threadLock: lock });
store.notifier.publish('inbox', 'u1,u2');
store.notifier.publish('inbox', 'u3');
// Wake-ups to other threads leave together on the next turn of the event loop.
await new Promise((resolve) => setImmediate(resolve));
await store.close();
