import { workerData } from 'node:worker_threads';
import { incrementTimes } from './counter.ts';

/* A second thread for test/sqlite-threads.test.ts: the same increments as the main thread, on the same file. */
const { path, lock, times } = workerData as { path: string; lock: SharedArrayBuffer; times: number };
await incrementTimes(path, lock, times);
