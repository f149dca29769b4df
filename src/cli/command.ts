/** What every `weft <command>` module exports. */
export interface Command {
  /** One line for `weft --help`. */
  summary: string;
  /** Full text for `weft <command> --help`. */
  help(): string;
  /** Runs the command; resolves to the process exit code. Long-running components resolve when stopped. */
  run(argv: string[]): Promise<number>;
}

export interface CommandEntry {
  summary: string;
  /** Loaded lazily so `weft --help` and short commands start fast. */
  load(): Command;
  /** Long-running components are listed apart from operator commands. */
  component?: boolean;
}
