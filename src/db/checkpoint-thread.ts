import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

/*
 * The checkpointer's thread (see checkpointInBackground in sqlite.ts): copies the WAL back into the database
 * file every `everyMs`, on a connection used for nothing else, until told to stop. PASSIVE: it copies what no
 * reader still needs and never waits for a lock, so writers and readers go on meanwhile; with nothing new in
 * the WAL it costs next to nothing. Its file I/O and fsyncs block only this thread.
 */

const { path, everyMs } = workerData as { path: string; everyMs: number };
const connection = new DatabaseSync(path);
const timer = setInterval(() => {
  try {
    connection.exec('pragma wal_checkpoint(passive)');
  } catch {
    // Busy (a commit past the backstop is checkpointing) or the file is going away: the next round tries again.
  }
}, everyMs);

parentPort!.once('message', () => {
  clearInterval(timer);
  connection.close();
  parentPort!.close();
});
