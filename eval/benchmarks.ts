/**
 * Reading a registered benchmark (corpus/registry.ts) into memory for evaluation: its readable
 * images, their captions, labels and the set's class names.
 */
import { UsageError } from '../corpus/errors.ts';
import { getBenchmark, iterateImages, readImageBytes, type Registry } from '../corpus/registry.ts';
import type { EvalBenchmark } from './zero-shot.ts';

/**
 * Loads benchmark `name` from an open registry. An unknown name lists the registered ones; a set
 * whose registration is incomplete, or that has no readable image, is refused.
 */
export async function loadBenchmark(registry: Registry, name: string, limit?: number): Promise<EvalBenchmark> {
  const info = getBenchmark(registry, name);
  if (!info.complete) {
    throw new UsageError(
      'ERR_BENCHMARK_INCOMPLETE',
      `Benchmark '${name}' is only partly registered: run altforge bench add again to finish it`,
      { context: { stage: 'eval', path: registry.path } },
    );
  }
  const images: Uint8Array[] = [];
  const captions: string[][] = [];
  const labels: Array<number | null> = [];
  for (const image of iterateImages(registry, name)) {
    if (limit !== undefined && images.length >= limit) break;
    images.push(new Uint8Array(await readImageBytes(registry, name, image)));
    captions.push(image.captions);
    labels.push(image.label);
  }
  if (images.length === 0) {
    throw new UsageError('ERR_EMPTY_BENCHMARK', `Benchmark '${name}' has no readable images to evaluate on`, {
      context: { stage: 'eval', path: registry.path },
    });
  }
  return { name, images, captions, labels, classNames: info.classNames };
}
