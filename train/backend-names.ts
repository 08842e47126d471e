/**
 * The compute backends a command can ask for, without loading TensorFlow.js: option schemas and
 * command-line flags name them from here, `backend.ts` starts them.
 */

/** Every backend choice, in `auto`'s order after `auto` itself. */
export const BACKEND_CHOICES = ['auto', 'tensorflow-gpu', 'tensorflow', 'wasm-blas', 'wasm', 'cpu'] as const;

/** What `--backend` accepts. */
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
