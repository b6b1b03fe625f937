/**
 * The benchmark's child processes and temp dirs. Everything is registered in one
 * {@linkcode BenchScope}, whose disposal ends every child (and any process they left behind),
 * drains their pipes and removes the temp dirs, on success, on error and on Ctrl-C alike.
 */

/** How long a child gets between SIGTERM and SIGKILL. */
const TERM_GRACE_MS = 3000;
/** How long to wait for a child's pipes to reach EOF after it exited before cancelling them. */
const PIPE_DRAIN_MS = 1000;
/** Output kept per stream; wrk and the servers print far less. */
const MAX_OUTPUT_CHARS = 64 * 1024;

/** Resolves after `ms`, or at once when `signal` aborts; never keeps the process alive longer. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Settles like `promise`, or rejects with `message` after `ms`. Clears its timer either way. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A process found in /proc: its id and start time, so a reused id is never mistaken for it. */
interface ProcessIdentity {
  pid: number;
  startTime: string;
}

/**
 * The fields of `/proc/<pid>/stat` after the command name (`[0]` is the state, `[1]` the parent
 * id), or undefined when the process is gone.
 */
async function statFields(pid: number): Promise<string[] | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // The command name may contain spaces and parentheses: count from the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  } catch {
    return undefined;
  }
}

/** `[ppid, starttime]` of a live process, or undefined when it is gone or a zombie. */
async function readStat(pid: number): Promise<[number, string] | undefined> {
  const fields = await statFields(pid);
  if (!fields || fields[0] === "Z") return undefined;
  return [Number(fields[1]), fields[19]];
}

/** A direct child of a process, as `/proc` shows it. */
export interface ChildProcessInfo {
  pid: number;
  /** The state letter of `/proc/<pid>/stat`: `Z` is a zombie its parent has not reaped. */
  state: string;
}

/** The direct children of `parentPid`, zombies included (an unreaped child is a leak too). */
export async function childrenOf(parentPid: number): Promise<ChildProcessInfo[]> {
  const children: ChildProcessInfo[] = [];
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const fields = await statFields(Number(entry.name));
    if (fields && Number(fields[1]) === parentPid) {
      children.push({ pid: Number(entry.name), state: fields[0] });
    }
  }
  return children;
}

/**
 * Resident memory of a process (`VmRSS` in `/proc/<pid>/status`).
 *
 * @throws {Error} when the process is gone or the field is missing
 */
export async function residentMemoryBytes(pid: number): Promise<number> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`Cannot find VmRSS in "/proc/${pid}/status"`);
  return Number(match[1]) * 1024;
}

/** Every live descendant of `rootPid` (children, grandchildren...), read from /proc. */
export async function descendantsOf(rootPid: number): Promise<ProcessIdentity[]> {
  const byParent = new Map<number, ProcessIdentity[]>();
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const stat = await readStat(pid);
    if (!stat) continue;
    const siblings = byParent.get(stat[0]) ?? [];
    siblings.push({ pid, startTime: stat[1] });
    byParent.set(stat[0], siblings);
  }
  const found: ProcessIdentity[] = [];
  const queue = [rootPid];
  while (queue.length > 0) {
    for (const child of byParent.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child.pid);
    }
  }
  return found;
}

async function isSameProcessAlive(process: ProcessIdentity): Promise<boolean> {
  return (await readStat(process.pid))?.[1] === process.startTime;
}

/** SIGKILLs each process still alive and waits (up to 2 s) until all are gone. */
async function killStragglers(processes: ProcessIdentity[]): Promise<ProcessIdentity[]> {
  const alive: ProcessIdentity[] = [];
  for (const process of processes) {
    if (!(await isSameProcessAlive(process))) continue;
    alive.push(process);
    try {
      Deno.kill(process.pid, "SIGKILL");
    } catch {
      // It ended between the check and the kill.
    }
  }
  const deadline = Date.now() + 2000;
  for (const process of alive) {
    while (await isSameProcessAlive(process) && Date.now() < deadline) await delay(10);
  }
  return alive;
}

/** Collects a stream into text (bounded), calling `onText` after every chunk. */
class OutputReader {
  text = "";
  readonly done: Promise<void>;
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;

  constructor(stream: ReadableStream<Uint8Array>, onText: () => void) {
    this.#reader = stream.getReader();
    this.done = this.#pump(onText);
  }

  async #pump(onText: () => void): Promise<void> {
    const decoder = new TextDecoder();
    try {
      while (true) {
        const { value, done } = await this.#reader.read();
        if (done) break;
        this.text += decoder.decode(value, { stream: true });
        if (this.text.length > MAX_OUTPUT_CHARS) this.text = this.text.slice(-MAX_OUTPUT_CHARS);
        onText();
      }
    } catch {
      // Cancelled by dispose(): the remaining output is not needed.
    }
  }

  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
    await this.done;
  }
}

/** What {@linkcode BenchScope.spawn} needs. */
export interface SpawnOptions {
  /** Short name for error messages. */
  label: string;
  command: string;
  args: string[];
  cwd?: string;
}

/** One child process with both pipes read from the start. */
export class BenchChild {
  readonly label: string;
  readonly pid: number;
  readonly status: Promise<Deno.CommandStatus>;
  readonly #child: Deno.ChildProcess;
  readonly #stdout: OutputReader;
  readonly #stderr: OutputReader;
  readonly #waiters = new Set<() => void>();
  #exited = false;
  #disposed: Promise<void> | undefined;

  constructor(options: SpawnOptions) {
    this.label = options.label;
    this.#child = new Deno.Command(options.command, {
      args: options.args,
      cwd: options.cwd,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.pid = this.#child.pid;
    this.status = this.#child.status.then((status) => {
      this.#exited = true;
      this.#notify();
      return status;
    });
    this.#stdout = new OutputReader(this.#child.stdout, () => this.#notify());
    this.#stderr = new OutputReader(this.#child.stderr, () => {});
  }

  get stdout(): string {
    return this.#stdout.text;
  }

  /** The last lines the child wrote to stderr, for error messages. */
  stderrTail(lines = 20): string {
    return this.#stderr.text.trimEnd().split("\n").slice(-lines).join("\n");
  }

  #notify(): void {
    for (const waiter of this.#waiters) waiter();
  }

  /**
   * Resolves with the first match of `pattern` on stdout. Races it against the child's exit
   * and a timeout (a child that dies before printing must not hang the benchmark).
   *
   * @throws {Error} when the child exits first or `timeoutMs` passes
   */
  waitForStdout(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const finish = (error?: Error, match?: RegExpExecArray) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        if (error) reject(error);
        else resolve(match!);
      };
      const check = () => {
        const match = pattern.exec(this.#stdout.text);
        if (match) return finish(undefined, match);
        if (this.#exited) {
          finish(new Error(`${this.label} exited before it was ready:\n${this.stderrTail()}`));
        }
      };
      const timer = setTimeout(
        () =>
          finish(
            new Error(`${this.label} was not ready after ${timeoutMs} ms:\n${this.stderrTail()}`),
          ),
        timeoutMs,
      );
      this.#waiters.add(check);
      check();
    });
  }

  /**
   * Waits for the child to exit on its own and for its output to be read to the end.
   *
   * @throws {Error} when it has not exited after `timeoutMs` (the caller's dispose then kills it)
   */
  async finished(timeoutMs: number): Promise<Deno.CommandStatus> {
    const status = await withTimeout(
      this.status,
      timeoutMs,
      `${this.label} did not finish within ${timeoutMs} ms`,
    );
    await withTimeout(
      Promise.all([this.#stdout.done, this.#stderr.done]),
      PIPE_DRAIN_MS,
      `${this.label} exited but its output did not end`,
    );
    return status;
  }

  /** Ends the child and everything it started. Safe to call more than once. */
  dispose(): Promise<void> {
    this.#disposed ??= this.#dispose();
    return this.#disposed;
  }

  async #dispose(): Promise<void> {
    // 1. Note the child's own children (runtime workers) while they can still be found: once the
    //    child dies they are re-parented and no longer look like ours.
    const descendants = this.#exited ? [] : await descendantsOf(this.pid);
    // 2. SIGTERM first so the runtime can stop its workers itself; SIGKILL after a grace period,
    //    because a graceful drain may wait on connections a load generator left open.
    this.#signal("SIGTERM");
    if (!this.#exited) await Promise.race([this.status, delay(TERM_GRACE_MS)]);
    this.#signal("SIGKILL");
    await this.status;
    // 3. Read the pipes to EOF, or cancel them if a surviving descendant still holds them open.
    await Promise.race([Promise.all([this.#stdout.done, this.#stderr.done]), delay(PIPE_DRAIN_MS)]);
    await Promise.all([this.#stdout.cancel(), this.#stderr.cancel()]);
    // 4. Whatever the child started and did not stop goes too.
    await killStragglers(descendants);
  }

  #signal(signal: Deno.Signal): void {
    // kill() after the status resolved throws "Child process has already terminated".
    if (this.#exited) return;
    try {
      this.#child.kill(signal);
    } catch {
      // It exited between the check and the kill.
    }
  }
}

/** Owns every child and temp dir of a benchmark run; `await using` it. */
export class BenchScope implements AsyncDisposable {
  readonly #children = new Set<BenchChild>();
  readonly #tempDirs: string[] = [];
  readonly #onWarning: (message: string) => void;
  #disposing: Promise<void> | undefined;

  constructor(onWarning: (message: string) => void) {
    this.#onWarning = onWarning;
  }

  /** True once {@linkcode disposeAll} has begun: nothing new may start. */
  get isDisposing(): boolean {
    return this.#disposing !== undefined;
  }

  #assertOpen(action: string): void {
    if (this.#disposing) throw new Error(`Cannot ${action}: the benchmark is stopping`);
  }

  /**
   * Spawns a child that {@linkcode disposeAll} will end.
   *
   * @throws {Error} once disposal has begun, so no child can outlive it
   */
  spawn(options: SpawnOptions): BenchChild {
    this.#assertOpen(`start ${options.label}`);
    const child = new BenchChild(options);
    this.#children.add(child);
    return child;
  }

  /** Ends one child now and forgets it. */
  async release(child: BenchChild): Promise<void> {
    try {
      await child.dispose();
    } finally {
      this.#children.delete(child);
    }
  }

  /** Creates a temp dir that {@linkcode disposeAll} will remove. */
  async makeTempDir(prefix: string): Promise<string> {
    this.#assertOpen("create a temp dir");
    const dir = await Deno.makeTempDir({ prefix });
    this.#tempDirs.push(dir);
    return dir;
  }

  /**
   * Ends every child, kills any process of ours still alive, removes the temp dirs. Every caller
   * (the normal exit, a signal handler, the watchdog) awaits the same single disposal, so none of
   * them can exit the process while another is still removing files.
   */
  disposeAll(): Promise<void> {
    this.#disposing ??= this.#disposeAll();
    return this.#disposing;
  }

  async #disposeAll(): Promise<void> {
    await Promise.allSettled([...this.#children].map((child) => this.release(child)));
    const leftovers = await killStragglers(await descendantsOf(Deno.pid));
    if (leftovers.length > 0) {
      this.#onWarning(
        `killed ${leftovers.length} leftover process(es): ${leftovers.map((p) => p.pid)}`,
      );
    }
    for (const dir of this.#tempDirs.splice(0)) {
      await Deno.remove(dir, { recursive: true }).catch((error) => {
        this.#onWarning(`could not remove "${dir}": ${error}`);
      });
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.disposeAll();
  }
}
