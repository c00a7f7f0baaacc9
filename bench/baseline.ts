import { randomUUID } from 'node:crypto';
import Fastify from 'fastify';

/*
 * The yardstick: a Fastify server that does nothing but what any ingest endpoint must (parse the JSON body,
 * answer 202 with an id). Herald's throughput is reported as a ratio to this, measured the same way in the
 * same run, so the ratio holds on a slow or noisy machine. Run as a child process by bench/run.ts.
 */

const port = Number(process.env['BENCH_PORT'] ?? 0);
const app = Fastify({ logger: false });

app.post('/v1/events', async (request, reply) => {
  if (typeof request.body !== 'object' || request.body === null) return reply.code(400).send();
  return reply.code(202).send({ id: randomUUID() });
});
app.get('/readyz', async () => ({ status: 'ready' }));

await app.listen({ host: '127.0.0.1', port });
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => void app.close().then(() => process.exit(0)));
}
