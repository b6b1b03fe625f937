/**
 * Logging: a small injected {@linkcode Logger}. This is the one module that writes to the console.
 */

/** Log levels from most to least verbose; `quiet` prints nothing. */
export type LogLevel = "debug" | "info" | "warn" | "error" | "quiet";

/** A leveled logger. Library code receives one; it never reaches for the console itself. */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
  /** One line of a function's own output, attributed to that function. */
  functionLine(functionName: string, line: string): void;
  /** Whether debug lines are printed (to skip building them otherwise). */
  readonly isDebugEnabled: boolean;
}

/** Where formatted lines go; the default writes to stderr. */
export type LogSink = (level: Exclude<LogLevel, "quiet">, line: string) => void;

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, quiet: 4 };

/** Every log line goes to stderr, so stdout stays free for what programs read. */
function stderrSink(_level: Exclude<LogLevel, "quiet">, line: string): void {
  // deno-lint-ignore no-console
  console.error(line);
}

/**
 * Creates a logger that drops lines below `level`.
 *
 * @param level the least severe level that is printed
 * @param sink where lines go (stderr by default)
 * @returns the logger
 */
export function createLogger(level: LogLevel, sink: LogSink = stderrSink): Logger {
  const min = RANK[level];
  const emit = (at: Exclude<LogLevel, "quiet">, message: string) => {
    if (RANK[at] >= min) sink(at, message);
  };
  return {
    debug: (m) => emit("debug", m),
    info: (m) => emit("info", m),
    warn: (m) => emit("warn", `warning: ${m}`),
    error: (m) => emit("error", `error: ${m}`),
    functionLine: (name, line) => emit("info", `[fn:${name}] ${line}`),
    isDebugEnabled: RANK.debug >= min,
  };
}

/** A logger that discards everything (the default for library code and tests). */
export const NULL_LOGGER: Logger = createLogger("quiet");

/** Writes one line to stdout: the listening address and other output meant for programs. */
export function printLine(line: string): void {
  // deno-lint-ignore no-console
  console.log(line);
}

/** Formats an error with its cause chain, for logs only (never for responses). */
export function formatError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    if (current instanceof Error) {
      parts.push(current.stack ?? `${current.name}: ${current.message}`);
      current = current.cause;
    } else {
      parts.push(String(current));
      current = undefined;
    }
  }
  return parts.join("\nCaused by: ");
}
