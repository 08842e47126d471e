import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readCheckpoint, writeCheckpoint } from '../../train/checkpoint.ts';
import { MetricsLog, readMetrics } from '../../train/metrics-log.ts';
import { tempDir } from '../helpers/corpus.ts';

let work: { path: string; remove: () => Promise<void> };
beforeAll(async () => {
  work = await tempDir('train-ckpt');
});
afterAll(async () => {
  await work.remove();
});

describe('checkpoint files', () => {
  test('round-trips metadata and named tensors exactly', () => {
    const file = join(work.path, 'a.ckpt');
    const w = Float32Array.from([1.5, -2.25, Math.PI, 1e-30, 3e38, 0]);
    writeCheckpoint(file, { step: 7, note: 'ünïcödé' }, [
      { name: 'model/w', shape: [2, 3], data: w },
      { name: 'model/b', shape: [1], data: Float32Array.from([0.5]) },
    ]);
    const back = readCheckpoint<{ step: number; note: string }>(file);
    expect(back.meta).toEqual({ step: 7, note: 'ünïcödé' });
    expect(back.tensors.get('model/w')).toEqual({ name: 'model/w', shape: [2, 3], data: w });
    expect(Array.from(back.tensors.get('model/b')?.data ?? [])).toEqual([0.5]);
    expect(readdirSync(work.path).filter((n) => n.includes('.tmp'))).toEqual([]);
  });

  test('replaces the previous checkpoint whole', () => {
    const file = join(work.path, 'b.ckpt');
    writeCheckpoint(file, { step: 1 }, [{ name: 'x', shape: [3], data: Float32Array.from([1, 2, 3]) }]);
    writeCheckpoint(file, { step: 2 }, [{ name: 'x', shape: [3], data: Float32Array.from([4, 5, 6]) }]);
    const back = readCheckpoint<{ step: number }>(file);
    expect(back.meta.step).toBe(2);
    expect(Array.from(back.tensors.get('x')?.data ?? [])).toEqual([4, 5, 6]);
  });

  test('refuses a truncated or altered file with a clear error', () => {
    const file = join(work.path, 'c.ckpt');
    writeCheckpoint(file, { step: 1 }, [{ name: 'x', shape: [4], data: Float32Array.from([1, 2, 3, 4]) }]);
    const bytes = readFileSync(file);
    writeFileSync(join(work.path, 'cut.ckpt'), bytes.subarray(0, bytes.length - 4));
    expect(() => readCheckpoint(join(work.path, 'cut.ckpt'))).toThrow(
      expect.objectContaining({ code: 'ERR_CHECKPOINT_CORRUPT' }),
    );
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 1] = (flipped[flipped.length - 1] as number) ^ 0xff;
    writeFileSync(join(work.path, 'flip.ckpt'), flipped);
    expect(() => readCheckpoint(join(work.path, 'flip.ckpt'))).toThrow(/checksum mismatch/);
    expect(() => readCheckpoint(join(work.path, 'none.ckpt'))).toThrow(
      expect.objectContaining({ code: 'ERR_CHECKPOINT_NOT_FOUND' }),
    );
  });
});

describe('metrics log', () => {
  test('drops the records written after the step a resumed run starts from', () => {
    const file = join(work.path, 'metrics.jsonl');
    const log = MetricsLog.open(file);
    for (let step = 1; step <= 5; step++) log.append({ kind: 'step', step, loss: 10 - step });
    log.append({ kind: 'end', step: 5 });
    log.close();
    writeFileSync(file, readFileSync(file, 'utf8') + '{"kind":"step","st'); // a line cut by a kill
    const resumed = MetricsLog.open(file, 3);
    resumed.append({ kind: 'step', step: 4, loss: 0 });
    resumed.close();
    expect(readMetrics(file)).toEqual([
      { kind: 'step', step: 1, loss: 9 },
      { kind: 'step', step: 2, loss: 8 },
      { kind: 'step', step: 3, loss: 7 },
      { kind: 'step', step: 4, loss: 0 },
    ]);
  });
});
