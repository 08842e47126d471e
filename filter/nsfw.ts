/**
 * The pornography rule's classifier: a small pluggable interface and one real implementation on
 * the `nsfwjs` package (MobileNetV2, its weights shipped inside the package) run on the tfjs wasm
 * backend. Scores are cached per image sha256 in the manifest, so rerunning the filter with another
 * threshold classifies nothing again.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

/** A loaded classifier: scores images for pornography. */
export interface NsfwModel {
  /** Scores in [0, 1], one per image (the stored JPEG bytes), in order. */
  score(images: Buffer[]): Promise<number[]>;
  dispose(): void;
}

/** A pornography classifier that the filter can load; `name` is recorded with every score. */
export interface NsfwClassifier {
  name: string;
  /** Images scored per call. */
  batchSize?: number;
  /** Loads the model; rejects with {@link ClassifierUnavailableError} when it is not installed. */
  load(): Promise<NsfwModel>;
}

/** The classifier's package is not installed: the rule reports itself as skipped. */
export class ClassifierUnavailableError extends Error {
  override name = 'ClassifierUnavailableError';
}

const INPUT_SIZE = 224;
// nsfwjs's output classes, in the model's order.
const HENTAI = 1;
const PORN = 3;
const CLASSES = 5;

function isModuleMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

/** Imports a module by name, as a function so that a test can stand in an absent package. */
export type ModuleImporter = (name: string) => Promise<unknown>;

/**
 * nsfwjs's MobileNetV2 on the tfjs wasm backend. The score is P(porn) + P(hentai): the classes
 * that are pornography, not the merely suggestive `sexy`.
 */
export function nsfwjsClassifier(importer: ModuleImporter = (name) => import(name)): NsfwClassifier {
  return {
    name: 'nsfwjs/MobileNetV2',
    batchSize: 16,
    async load() {
      let tf: typeof import('@tensorflow/tfjs');
      let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
      let nsfwjs: typeof import('nsfwjs');
      try {
        tf = (await importer('@tensorflow/tfjs')) as typeof tf;
        wasm = (await importer('@tensorflow/tfjs-backend-wasm')) as typeof wasm;
        nsfwjs = (await importer('nsfwjs')) as typeof nsfwjs;
      } catch (err) {
        if (isModuleMissing(err)) {
          throw new ClassifierUnavailableError(
            `nsfwjs is not installed (${(err as Error).message.split('\n')[0]}); install it with \`npm i nsfwjs\``,
            { cause: err },
          );
        }
        throw err;
      }
      // A backend already chosen by the process (a GPU one, or the trainer's) is kept.
      if (!['wasm', 'tensorflow', 'webgpu'].includes(tf.getBackend())) {
        const require = createRequire(import.meta.url);
        wasm.setWasmPaths(join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist') + '/');
        await tf.setBackend('wasm');
      }
      await tf.ready();
      // nsfwjs announces its model on console.info; the filter has its own progress output.
      const info = console.info;
      console.info = () => {};
      const net = await nsfwjs.load('MobileNetV2').finally(() => {
        console.info = info;
      });
      return {
        async score(images) {
          const pixels = await Promise.all(
            images.map((jpg) =>
              sharp(jpg)
                .resize(INPUT_SIZE, INPUT_SIZE, { fit: 'fill' })
                .removeAlpha()
                .toColourspace('srgb')
                .raw()
                .toBuffer(),
            ),
          );
          const batch = new Float32Array(images.length * INPUT_SIZE * INPUT_SIZE * 3);
          let o = 0;
          for (const p of pixels) for (let i = 0; i < p.length; i++) batch[o++] = p[i]! / 255;
          const probs = tf.tidy(() => {
            const x = tf.tensor4d(batch, [images.length, INPUT_SIZE, INPUT_SIZE, 3]);
            return net.model.predict(x) as import('@tensorflow/tfjs').Tensor;
          });
          const values = await probs.data();
          probs.dispose();
          return images.map((_, i) => values[i * CLASSES + PORN]! + values[i * CLASSES + HENTAI]!);
        },
        dispose() {
          net.model.dispose();
        },
      };
    },
  };
}
