import cliProgress from 'cli-progress';

/** A progress bar on a terminal; silent otherwise (the caller prints a one-line summary). */
export interface Progress {
  /** `ok` and `failed` (the crawl's) add an ok-rate to the bar; other stages leave them out. */
  update(phase: string, done: number, total: number | null, ok?: number, failed?: number): void;
  stop(): void;
}

const WITH_TOTAL = '{phase} [{bar}] {value}/{total} | {rate}/s | ok {okPct}% | ETA {eta_formatted}';
// Phases whose size is not known in advance (pages being discovered, a WARC being read).
const WITHOUT_TOTAL = '{phase} {value} done | {rate}/s | ok {okPct}%';

function withoutOk(format: string, drop: boolean): string {
  return drop ? format.replace(' | ok {okPct}%', '') : format;
}

/** The bar on the terminal now, if any. */
let onScreen: cliProgress.SingleBar | null = null;
/** Set by an interruption: no bar is drawn after its notice. */
let frozen = false;

/**
 * Starts a bar on stderr (`format` and `etaBuffer` its own), unless an interruption has stopped
 * the bars ({@link stopBarsForNotice}): then none (null).
 */
export function startBar(
  options: Pick<cliProgress.Options, 'format' | 'etaBuffer'>,
  total: number,
  payload: object,
): cliProgress.SingleBar | null {
  if (frozen) return null;
  const bar = new cliProgress.SingleBar(
    { ...options, stream: process.stderr, hideCursor: true, fps: 5 },
    cliProgress.Presets.shades_classic,
  );
  bar.on('stop', () => {
    if (onScreen === bar) onScreen = null;
  });
  bar.start(total, 0, payload);
  onScreen = bar;
  return bar;
}

/**
 * Stops the bar on the terminal, at its last state, and draws no other: an interruption's notice
 * is then one line of its own under it. A bar drawn on would go on below the notice, and its stop
 * would put the cursor back where the bar started, so that the summary is written over the
 * notice. Returns whether a bar was on screen (its stop ended its line).
 */
export function stopBarsForNotice(): boolean {
  frozen = true;
  const bar = onScreen;
  bar?.stop();
  return bar !== null;
}

/** Creates a progress bar on stderr when it is a terminal, or a no-op. */
export function createProgress(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return { update: () => undefined, stop: () => undefined };
  let bar: cliProgress.SingleBar | null = null;
  let phase = '';
  let started = Date.now();
  return {
    update(nextPhase, done, total, ok, failed) {
      if (nextPhase !== phase || bar === null) {
        bar?.stop();
        phase = nextPhase;
        started = Date.now();
        bar = startBar(
          { format: withoutOk(total === null ? WITHOUT_TOTAL : WITH_TOTAL, ok === undefined), etaBuffer: 200 },
          total ?? 0,
          { phase: phase.padEnd(8), rate: '0', okPct: '-' },
        );
        if (bar === null) return;
      }
      const elapsed = (Date.now() - started) / 1000;
      if (total !== null) bar.setTotal(total);
      bar.update(done, {
        rate: elapsed > 0 ? (done / elapsed).toFixed(1) : '0',
        okPct:
          ok !== undefined && failed !== undefined && ok + failed > 0 ? ((100 * ok) / (ok + failed)).toFixed(1) : '-',
      });
    },
    stop() {
      bar?.stop();
    },
  };
}
