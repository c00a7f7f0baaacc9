import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/** What one phase of the run cost a process. */
export interface PhaseUsage {
  seconds: number;
  /** CPU time over wall time; 100 is one core busy the whole phase. */
  cpu_percent: number;
  /** The largest VmRSS sample. */
  peak_rss_mib: number;
}

/** Memory and CPU of one process over the run. */
export interface ResourceFigures {
  /** The kernel's high-water mark (VmHWM): the true peak, including moments between samples. */
  peak_rss_mib: number;
  /** CPU over the whole sampling period (100 is one core). */
  cpu_percent: number;
  by_phase: Record<string, PhaseUsage>;
}

/** Samples a process's memory; `phase` closes the current phase (the first is `start-up`) and names the next. */
export interface ResourceSampler {
  phase(name: string): void;
  /** Closes the last phase, reads VmHWM and stops sampling (call before the process exits). */
  stop(): ResourceFigures;
}

// Linux reports CPU time in clock ticks; 100 a second on every common configuration.
const TICKS_PER_S = 100;

/** Starts reading `/proc/<pid>/{status,stat}` (Linux; elsewhere the figures are zeros). */
export function sampleResources(pid: number, intervalMs = 200): ResourceSampler {
  const byPhase: Record<string, PhaseUsage> = {};
  const started = { at: performance.now(), ticks: cpuTicks(pid) };
  let current = { name: 'start-up', startedAt: started.at, startTicks: started.ticks, peak: 0 };
  const sample = () => {
    current.peak = Math.max(current.peak, toMiB(statusField(pid, 'VmRSS') ?? 0));
  };
  const close = () => {
    sample();
    const seconds = (performance.now() - current.startedAt) / 1000;
    byPhase[current.name] = {
      seconds: Math.round(seconds * 10) / 10,
      cpu_percent: cpuPercent(pid, current.startTicks, seconds),
      peak_rss_mib: current.peak,
    };
  };
  const timer = setInterval(sample, intervalMs).unref();
  sample();
  let result: ResourceFigures | undefined;
  return {
    phase(name) {
      close();
      current = { name, startedAt: performance.now(), startTicks: cpuTicks(pid), peak: 0 };
    },
    stop() {
      if (result) return result;
      clearInterval(timer);
      close();
      result = {
        peak_rss_mib: toMiB(statusField(pid, 'VmHWM') ?? 0),
        cpu_percent: cpuPercent(pid, started.ticks, (performance.now() - started.at) / 1000),
        by_phase: byPhase,
      };
      return result;
    },
  };
}

/** CPU used since `sinceTicks` over `seconds` of wall time, in percent of one core. */
function cpuPercent(pid: number, sinceTicks: number, seconds: number): number {
  return seconds > 0 ? Math.round(((cpuTicks(pid) - sinceTicks) / TICKS_PER_S / seconds) * 100) : 0;
}

/** A `kB` field of `/proc/<pid>/status`, or undefined when the process is gone or it is not Linux. */
function statusField(pid: number, field: string): number | undefined {
  const match = readProc(pid, 'status').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return match ? Number(match[1]) : undefined;
}

/** User plus system CPU time of a process, in clock ticks (fields 14 and 15 of `/proc/<pid>/stat`). */
function cpuTicks(pid: number): number {
  const stat = readProc(pid, 'stat');
  // The command name (field 2) may hold spaces; the fields after it start behind its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
}

function readProc(pid: number, file: string): string {
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return '';
  }
}

const toMiB = (kb: number) => Math.round((kb / 1024) * 10) / 10;
