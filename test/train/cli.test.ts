import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { summarizeScore } from '../../cli/score.ts';
import type { ScoreResult } from '../../train/index.ts';
import { lines, pollUntil, runCli, startCli } from '../helpers/cli.ts';
import { readCheckpoint } from '../../train/checkpoint.ts';
import { tempDir } from '../helpers/corpus.ts';
import { makeEmojiCorpus } from './_corpus.ts';

let work: { path: string; remove: () => Promise<void> };
let corpus: string;

beforeAll(async () => {
  work = await tempDir('train-cli');
  corpus = join(work.path, 'corpus');
  await makeEmojiCorpus(corpus, { count: 12, shardSize: 12 });
});

afterAll(async () => {
  await work.remove();
});

/** Flags of a tiny vanilla run: 2 epochs of 2 steps, 16 px images. */
function tinyFlags(): string[] {
  return [
    'train',
    '--corpus',
    corpus,
    '--backend',
    'wasm',
    '--image-size',
    '16',
    '--epochs',
    '2',
    '--batch-size',
    '6',
    '--vocab-size',
    '300',
  ];
}

/** Flags of a tiny nlip run that acts from its second epoch on the agreement signal. */
function nlipFlags(): string[] {
  return [
    ...tinyFlags(),
    '--robust',
    'nlip',
    '--warmup-epochs',
    '1',
    '--min-separation',
    '0',
    '--max-noise-fraction',
    '1',
    '--noise-signal',
    'agreement',
    '--agreement-neighbours',
    '2',
    '--no-multi-positive',
    '--relabel-threshold',
    '0',
  ];
}

describe('altforge train and score', () => {
  test('train prints the backend and a one-line summary; score writes noise_prob', async () => {
    const out = join(work.path, 'run');
    const train = await runCli([...tinyFlags(), '--out', out]);
    expect(train.stderr).toMatch(/^backend: wasm/);
    const summary = lines(train.stderr).at(-1) ?? '';
    expect(summary).toMatch(
      /^train: 12 pairs, step 4 \(4 this run, 2\/epoch at batch 6\), loss \d+\.\d{4}, .* on wasm; .* -> .*checkpoint\.ckpt$/,
    );
    expect(train.code).toBe(0);
    expect(existsSync(join(out, 'checkpoint.ckpt'))).toBe(true);

    const score = await runCli(['score', '--corpus', corpus, '--checkpoint', out, '--backend', 'wasm', '--json']);
    expect(score.code).toBe(0);
    const result = JSON.parse(score.stdout) as { scored: number };
    expect(result.scored).toBe(12);
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const { n } = db.prepare(`SELECT COUNT(*) AS n FROM pairs WHERE noise_prob IS NOT NULL`).get() as { n: number };
    db.close();
    expect(n).toBe(12);
  });

  test('train passes the nlip noise flags on; the default auto signal never acts where every caption is unique', async () => {
    const common = nlipFlags();
    const relabelled = (dir: string): number =>
      (
        JSON.parse(readFileSync(join(dir, 'noise.json'), 'utf8')) as { completedCaption: Array<string | null> }
      ).completedCaption.filter((c) => c !== null).length;
    const on = join(work.path, 'nlip-relabel');
    const withRelabel = await runCli([...common, '--out', on]);
    expect(withRelabel.code).toBe(0);
    expect(relabelled(on)).toBeGreaterThan(0);
    expect(lines(withRelabel.stderr).at(-1)).toMatch(/; noise \(agreement\): \d+ of 12 pairs above 0\.5; /);
    const off = join(work.path, 'nlip-no-relabel');
    const withoutRelabel = await runCli([...common, '--no-relabel', '--out', off]);
    expect(withoutRelabel.code).toBe(0);
    expect(relabelled(off)).toBe(0);
    const epochs = readFileSync(join(off, 'metrics.jsonl'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('"kind":"epoch"'));
    expect(epochs).toHaveLength(1);
    // Every caption of this corpus is unique: `auto` (the default signal) estimates but never acts.
    const auto = join(work.path, 'nlip-auto');
    const withoutSignal = [...common];
    withoutSignal.splice(withoutSignal.indexOf('--noise-signal'), 2);
    const autoSignal = await runCli([...withoutSignal, '--out', auto]);
    expect(autoSignal.code).toBe(0);
    const noise = JSON.parse(readFileSync(join(auto, 'noise.json'), 'utf8')) as { noiseProb: number[] };
    expect(noise.noiseProb).toEqual(Array.from({ length: 12 }, () => 0));
    // ... and the summary says so, with the flag that makes it act.
    expect(lines(autoSignal.stderr).at(-1)).toContain(
      '; noise estimate off (most captions have fewer than 3 holders; --noise-signal loss acts on the loss); ',
    );
  });

  test("train relabels from the neighbours' captions with the gate latched", async () => {
    const common = nlipFlags();
    // Each relabelled pair gets another training caption than its own.
    const neighbours = join(work.path, 'nlip-relabel-neighbours');
    const fromNeighbours = await runCli([
      ...common,
      '--relabel-source',
      'neighbours',
      '--gate-latch',
      '--out',
      neighbours,
    ]);
    expect(fromNeighbours.code).toBe(0);
    const saved = JSON.parse(readFileSync(join(neighbours, 'noise.json'), 'utf8')) as {
      ids: string[];
      completedCaption: Array<string | null>;
    };
    const db = new Database(join(corpus, 'manifest.sqlite'), { readonly: true });
    const captionOf = new Map(
      (db.prepare(`SELECT key, caption FROM pairs`).all() as Array<{ key: string; caption: string }>).map((r) => [
        r.key,
        r.caption,
      ]),
    );
    db.close();
    const changed = saved.completedCaption.flatMap((c, i) =>
      c === null ? [] : [[saved.ids[i] as string, c] as const],
    );
    expect(changed.length).toBeGreaterThan(0);
    const captions = new Set(captionOf.values());
    for (const [id, caption] of changed) {
      expect(captions.has(caption)).toBe(true);
      expect(caption).not.toBe(captionOf.get(id));
    }
  });

  test("train scores agreement by the joint gap (the neighbours' caption vote added) when asked", async () => {
    const common = nlipFlags();
    const probs = (dir: string): number[] =>
      (JSON.parse(readFileSync(join(dir, 'noise.json'), 'utf8')) as { noiseProb: number[] }).noiseProb;
    const gapDir = join(work.path, 'nlip-score-gap');
    const jointDir = join(work.path, 'nlip-score-joint');
    const gap = await runCli([...common, '--agreement-score', 'gap', '--no-relabel', '--out', gapDir]);
    const joint = await runCli([...common, '--agreement-score', 'joint', '--no-relabel', '--out', jointDir]);
    expect(gap.code).toBe(0);
    expect(joint.code).toBe(0);
    // The same model at the first harmonisation (warm-up is vanilla): only the score differs, and
    // with two neighbours carrying other captions the vote moves it.
    expect(probs(jointDir)).toHaveLength(12);
    expect(probs(jointDir)).not.toEqual(probs(gapDir));
    // The default is the joint gap.
    const byDefault = join(work.path, 'nlip-score-default');
    expect((await runCli([...common, '--no-relabel', '--out', byDefault])).code).toBe(0);
    expect(probs(byDefault)).toEqual(probs(jointDir));
  });

  test('SIGINT stops train after the current step, with its checkpoint, exit 130', async () => {
    const out = join(work.path, 'interrupted');
    const metrics = join(out, 'metrics.jsonl');
    // 2,000 epochs of 2 steps: far more than run before the signal is seen.
    const flags = [...tinyFlags(), '--out', out];
    flags[flags.indexOf('--epochs') + 1] = '2000';
    const run = startCli(flags);
    const started = await pollUntil(
      () => (existsSync(metrics) && readFileSync(metrics, 'utf8').includes('"kind":"step"') ? true : undefined),
      () => run.hasExited(),
    );
    expect(started).toBe(true);
    run.signal('SIGINT');
    const stopped = await run.exited;
    expect(stopped.code, stopped.stderr).toBe(130);
    expect(stopped.stderr).toContain('SIGINT: finishing the items in flight');
    const records = lines(readFileSync(metrics, 'utf8')).map(
      (l) => JSON.parse(l) as { kind: string; step: number; stoppedBy?: string },
    );
    const end = records.at(-1);
    expect(end).toMatchObject({ kind: 'end', stoppedBy: 'signal' });
    expect(end?.step).toBeLessThan(4000);
    expect(readCheckpoint<{ step: number }>(join(out, 'checkpoint.ckpt')).meta.step).toBe(end?.step);
  });

  test('usage errors exit 2 with one line', async () => {
    const missing = await runCli(['train', '--out', join(work.path, 'x')]);
    expect(missing.code).toBe(2);
    expect(lines(missing.stderr)).toEqual([expect.stringContaining('Missing --corpus DIR')]);
    const none = await runCli([
      'train',
      '--corpus',
      join(work.path, 'nope'),
      '--out',
      join(work.path, 'y'),
      '--backend',
      'cpu',
    ]);
    expect(none.code).toBe(2);
    expect(lines(none.stderr)).toEqual([expect.stringMatching(/No corpus at .*\[ERR_CORPUS_NOT_FOUND\]$/)]);
    // One corpus given twice (as a positional and a flag): refused, no run directory left behind.
    const twice = await runCli(['train', corpus, '--corpus', corpus, '--out', join(work.path, 'twice')]);
    expect(twice.code).toBe(2);
    expect(lines(twice.stderr)).toEqual([
      `altforge: Flag --corpus: corpus '${corpus}' is given twice [ERR_DUPLICATE_CORPUS]`,
    ]);
    expect(existsSync(join(work.path, 'twice'))).toBe(false);
    // A bad value of a flag: one line naming the flag and what it accepts.
    for (const [flag, value, expected] of [
      ['--relabel-source', 'oracle', '--relabel-source: expected one of model, neighbours, joint'],
      ['--robust', 'magic', '--robust: expected one of none, nlip'],
      ['--agreement-neighbours', 'many', '--agreement-neighbours: expected auto or a whole number'],
      ['--noise-signal', 'magic', '--noise-signal: expected one of auto, agreement, loss'],
      ['--agreement-score', 'both', '--agreement-score: expected one of gap, joint'],
      ['--min-noise-fraction', 'some', '--min-noise-fraction: expected a number'],
    ] as const) {
      const bad = await runCli(['train', '--corpus', corpus, '--out', join(work.path, 'bad'), flag, value]);
      expect(bad.code).toBe(2);
      expect(lines(bad.stderr)).toEqual([expect.stringContaining(expected)]);
    }
    const score = await runCli(['score', '--corpus', corpus, '--checkpoint', join(work.path, 'nothing.ckpt')]);
    expect(score.code).toBe(2);
    expect(lines(score.stderr)).toEqual([expect.stringContaining('[ERR_CHECKPOINT_NOT_FOUND]')]);
  });
});

describe('summarizeScore', () => {
  const result = (separation: number): ScoreResult => ({
    corpus: '/c',
    checkpoint: '/c/run/checkpoint.ckpt',
    backend: { name: 'wasm', skipped: [] } as unknown as ScoreResult['backend'],
    scored: 10,
    signal: 'words',
    missingImages: 0,
    noisy: 6,
    meanNoise: 0.55,
    completed: 0,
    separation,
    durationMs: 1000,
  });

  test('says that noise_prob only ranks the pairs when the scores are one hump (separation below 2)', () => {
    expect(summarizeScore(result(1.5))).toContain(
      'separation 1.50 (below 2: one hump of scores, so noise_prob ranks the pairs and 0.5 is no noise line)',
    );
    expect(summarizeScore(result(2.5))).toContain('separation 2.50;');
    expect(summarizeScore(result(2.5))).not.toContain('one hump');
  });
});
