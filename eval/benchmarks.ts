/**
 * Reading a registered benchmark (corpus/registry.ts) for evaluation: its captions, labels and
 * class names in memory, its images read a batch at a time as they are embedded (`openBenchmark`),
 * or all in memory (`loadBenchmark`, for a comparison that evaluates the same set many times).
 */
import { UsageError } from '../corpus/errors.ts';
import {
  getCompleteBenchmark,
  iterateImages,
  readImageBytesById,
  type BenchmarkImage,
  type Registry,
} from '../corpus/registry.ts';
import type { RawImage } from '../train/index.ts';
import type { EvalBenchmark, ImageStream } from './zero-shot.ts';

/**
 * Opens benchmark `name` of an open registry (which must stay open while its images are read). An
 * unknown name lists the registered ones; a set whose registration is incomplete, or that has no
 * readable image, is refused.
 */
export function openBenchmark(
  registry: Registry,
  name: string,
  limit?: number,
): EvalBenchmark & { images: ImageStream } {
  const info = getCompleteBenchmark(registry, name, 'eval');
  const refs: BenchmarkImage[] = [];
  for (const image of iterateImages(registry, name)) {
    if (limit !== undefined && refs.length >= limit) break;
    refs.push(image);
  }
  if (refs.length === 0) {
    throw new UsageError('ERR_EMPTY_BENCHMARK', `Benchmark '${name}' has no readable images to evaluate on`, {
      context: { stage: 'eval', path: registry.path },
    });
  }
  return {
    name,
    images: {
      count: refs.length,
      async *batches(size: number) {
        for (let s = 0; s < refs.length; s += size) {
          const batch: Uint8Array[] = [];
          for (const image of refs.slice(s, s + size)) {
            batch.push(
              new Uint8Array(
                await readImageBytesById(registry, info.id, image.imageId, `image ${image.imageId} of ${name}`),
              ),
            );
          }
          yield batch;
        }
      },
    },
    captions: refs.map((r) => r.captions),
    labels: refs.map((r) => r.label),
    classNames: info.classNames,
  };
}

/** {@link openBenchmark} with every image read into memory. */
export async function loadBenchmark(registry: Registry, name: string, limit?: number): Promise<EvalBenchmark> {
  const opened = openBenchmark(registry, name, limit);
  const images: Array<Uint8Array | RawImage> = [];
  for await (const batch of opened.images.batches(256)) images.push(...batch);
  return { ...opened, images };
}
