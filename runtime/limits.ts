/**
 * Pure: what a worker's limits say about one usage sample. The supervisor samples CPU time and
 * resident memory from outside the process; this module decides when to warn the function
 * (`beforeunload`), retire the worker, or kill it.
 */

import type { WorkerLimitValues } from "./config.ts";

/** Why a worker process ended. Supabase's shutdown reasons, plus a crash. */
export type WorkerEndReason =
  | "WallClockTime"
  | "CPUTime"
  | "Memory"
  | "EarlyDrop"
  | "TerminationRequested"
  | "Crashed";

/**
 * A worker's limits, as `create()` gave them (0 means no limit): memory as growth of resident
 * memory over the worker's size right after boot; wall clock retires at half and kills at the full
 * time; CPU time retires at the soft limit and kills at the hard one.
 */
export type WorkerLimits = WorkerLimitValues;

/** Percentages of each limit at which `beforeunload` fires. */
export interface BeforeunloadRatios {
  wallClock: number;
  cpu: number;
  memory: number;
}

/** `beforeunload` reasons, as Supabase names them. */
export type BeforeunloadReason = "cpu" | "memory" | "wall_clock" | "early_drop" | "termination";

/** One measurement of a worker, relative to the start of what is being limited. */
export interface UsageSample {
  /** CPU time used (user + system). */
  cpuMs: number;
  /** Resident memory above the worker's size right after boot. */
  memoryGrowthBytes: number;
  /** Wall-clock time elapsed. */
  elapsedMs: number;
}

/** What has already happened to the worker, so each step fires once. */
export interface LimitState {
  warned: Set<BeforeunloadReason>;
  retired: boolean;
}

/** What to do about a sample. */
export type LimitAction =
  | { kind: "warn"; reason: BeforeunloadReason }
  | { kind: "retire"; reason: WorkerEndReason }
  | { kind: "kill"; reason: WorkerEndReason };

const MIB = 1024 * 1024;

/**
 * Decides what a sample calls for. Kills come first and end the list; warnings and retirement
 * fire once each (recorded in `state`).
 *
 * @returns the actions, in the order to carry them out
 */
export function checkLimits(
  limits: WorkerLimits,
  ratios: BeforeunloadRatios,
  sample: UsageSample,
  state: LimitState,
): LimitAction[] {
  const memoryLimitBytes = limits.memoryLimitMb * MIB;
  if (memoryLimitBytes > 0 && sample.memoryGrowthBytes >= memoryLimitBytes) {
    return [{ kind: "kill", reason: "Memory" }];
  }
  if (limits.cpuTimeHardLimitMs > 0 && sample.cpuMs >= limits.cpuTimeHardLimitMs) {
    return [{ kind: "kill", reason: "CPUTime" }];
  }
  if (limits.workerTimeoutMs > 0 && sample.elapsedMs >= limits.workerTimeoutMs) {
    return [{ kind: "kill", reason: "WallClockTime" }];
  }
  const actions: LimitAction[] = [];
  const warnAt = (reason: BeforeunloadReason, used: number, limit: number, percent: number) => {
    if (limit > 0 && !state.warned.has(reason) && used >= (limit * percent) / 100) {
      state.warned.add(reason);
      actions.push({ kind: "warn", reason });
    }
  };
  warnAt("memory", sample.memoryGrowthBytes, memoryLimitBytes, ratios.memory);
  warnAt("cpu", sample.cpuMs, limits.cpuTimeHardLimitMs, ratios.cpu);
  warnAt("wall_clock", sample.elapsedMs, limits.workerTimeoutMs, ratios.wallClock);
  if (!state.retired) {
    let retireFor: WorkerEndReason | undefined;
    if (limits.cpuTimeSoftLimitMs > 0 && sample.cpuMs >= limits.cpuTimeSoftLimitMs) {
      retireFor = "CPUTime";
    } else if (limits.workerTimeoutMs > 0 && sample.elapsedMs >= limits.workerTimeoutMs / 2) {
      retireFor = "WallClockTime";
    }
    if (retireFor) {
      state.retired = true;
      actions.push({ kind: "retire", reason: retireFor });
    }
  }
  return actions;
}

/** CPU time and resident memory of a process, read from `/proc/<pid>/stat`. */
export interface ProcessUsage {
  cpuMs: number;
  rssBytes: number;
}

/** Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK`; 100 on Linux). */
const CLOCK_TICKS_PER_SECOND = 100;
/** Page size of the `rss` field (`getconf PAGESIZE`; 4096 on x86_64 and arm64 Linux). */
const PAGE_BYTES = 4096;

/**
 * Parses the text of `/proc/<pid>/stat`.
 *
 * @returns the usage, or `undefined` when the text is not a stat line
 */
export function parseProcStat(text: string): ProcessUsage | undefined {
  // The command name (field 2) may contain spaces and parentheses: fields after it are counted
  // from the last ")".
  const close = text.lastIndexOf(")");
  if (close === -1) return undefined;
  const fields = text.slice(close + 2).split(" ");
  // fields[0] is field 3 (state); utime, stime and rss are fields 14, 15 and 24.
  const numbers = [fields[11], fields[12], fields[21]];
  if (!numbers.every((field) => field !== undefined && /^\d+$/.test(field))) return undefined;
  const [utime, stime, rssPages] = numbers.map(Number);
  return {
    cpuMs: ((utime + stime) * 1000) / CLOCK_TICKS_PER_SECOND,
    rssBytes: rssPages * PAGE_BYTES,
  };
}
