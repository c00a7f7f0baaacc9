import {
  AggregatorRegistry,
  Counter,
  collectDefaultMetrics,
  Gauge,
  Histogram,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';

/** A registry's metrics as data, to send from a workers' thread to the one that serves `/metrics`. */
export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

/**
 * Herald's Prometheus metrics, on a registry of its own (several Herald apps may share a process in tests).
 * The process's own figures (CPU, memory, event loop) are collected by the HTTP thread's registry only.
 */
export function createMetrics(options: { processMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'herald_' });
  return {
    registry,
    eventsIngested: new Counter({
      name: 'herald_events_ingested_total',
      help: 'Events accepted (202), by source and whether they repeated an earlier event',
      labelNames: ['source', 'duplicate'] as const,
      registers: [registry],
    }),
    eventsRouted: new Counter({
      name: 'herald_events_routed_total',
      help: 'Events routed',
      registers: [registry],
    }),
    notificationsCreated: new Counter({
      name: 'herald_notifications_created_total',
      help: 'Inbox notifications created',
      registers: [registry],
    }),
    deliveryAttempts: new Counter({
      name: 'herald_delivery_attempts_total',
      help: 'Outbound delivery attempts, by channel and outcome',
      labelNames: ['channel', 'outcome'] as const,
      registers: [registry],
    }),
    deliveryLatency: new Histogram({
      name: 'herald_delivery_attempt_seconds',
      help: 'Duration of outbound delivery attempts',
      labelNames: ['channel'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 30],
      registers: [registry],
    }),
    streamClients: new Gauge({
      name: 'herald_stream_clients',
      help: 'Open inbox streams (SSE) on this node',
      registers: [registry],
    }),
    timersOverdue: new Gauge({
      name: 'herald_timers_overdue',
      help: 'Durable timers (escalations, reminders, noise flushes) due more than a minute ago and not yet fired',
      // Counted by whichever thread looked last: merged, the threads' figures are the same count, not a sum.
      aggregator: 'max',
      registers: [registry],
    }),
    workerErrors: new Counter({
      name: 'herald_worker_errors_total',
      help: 'Errors caught by background workers, by worker',
      labelNames: ['worker'] as const,
      registers: [registry],
    }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;

/** The text `/metrics` answers: this thread's metrics merged with other threads' (counters summed). */
export async function exposition(metrics: Metrics, others: MetricsSnapshot[]): Promise<string> {
  if (others.length === 0) return metrics.registry.metrics();
  const own = (await metrics.registry.getMetricsAsJSON()) as MetricsSnapshot;
  return AggregatorRegistry.aggregate([own, ...others]).metrics();
}
