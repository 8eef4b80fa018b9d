import cliProgress from 'cli-progress';

/** Reports how far a long job is; created by commands, passed to library functions as a callback. */
export interface Progress {
  update(done: number, extra?: string): void;
  stop(): void;
}

export interface ProgressOptions {
  /** Plain lines at most this often when stderr is not a terminal (default 5 s). */
  lineIntervalMs?: number;
  stream?: NodeJS.WriteStream;
}

/**
 * A bar with ETA on a terminal; on anything else (CI logs, pipes) a plain line every few seconds, so logs
 * stay readable. Always on stderr: stdout is reserved for results (--json).
 */
export function createProgress(label: string, total: number, options: ProgressOptions = {}): Progress {
  const stream = options.stream ?? process.stderr;
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} [{bar}] {percentage}% | {value}/{total} | ETA {eta_formatted} | {extra}`,
        etaBuffer: 20,
        hideCursor: true,
        clearOnComplete: false,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { extra: '' });
    return {
      update: (done, extra = '') => bar.update(done, { extra }),
      stop: () => bar.stop(),
    };
  }
  const interval = options.lineIntervalMs ?? 5000;
  const started = Date.now();
  let lastLine = started;
  let last = 0;
  const line = (done: number, extra: string) => {
    const elapsed = (Date.now() - started) / 1000;
    const eta = done > 0 ? ` ETA ${Math.round((elapsed * (total - done)) / done)}s` : '';
    stream.write(
      `${label}: ${done}/${total} (${Math.floor((100 * done) / total)}%)${eta}${extra ? ` ${extra}` : ''}\n`,
    );
  };
  return {
    update(done, extra = '') {
      last = done;
      if (Date.now() - lastLine >= interval) {
        lastLine = Date.now();
        line(done, extra);
      }
    },
    // Nothing done (a run that failed at once): no line, so its error stays the only one.
    stop: () => {
      if (last > 0) line(last, 'done');
    },
  };
}
