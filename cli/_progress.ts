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
        bar = new cliProgress.SingleBar(
          {
            stream: process.stderr,
            format: withoutOk(total === null ? WITHOUT_TOTAL : WITH_TOTAL, ok === undefined),
            hideCursor: true,
            etaBuffer: 200,
            fps: 5,
          },
          cliProgress.Presets.shades_classic,
        );
        bar.start(total ?? 0, 0, { phase: phase.padEnd(8), rate: '0', okPct: '-' });
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
