import type { z } from 'zod';
import { UsageError, shown } from './errors.ts';

/**
 * Validates options once at an entry with a zod schema. A failure is a usage error whose message
 * names the option and the value received, as the crawl's do:
 * ``Option 'demo.images': expected an integer in [1, 50000], got `0` ``.
 */
export function parseOptions<S extends z.ZodType>(schema: S, options: unknown, prefix: string): z.output<S> {
  const parsed = schema.safeParse(options);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = issue?.path.join('.') ?? '';
  const received = path
    .split('.')
    .reduce<unknown>(
      (v, k) => (v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined),
      options,
    );
  const detail =
    issue?.code === 'unrecognized_keys'
      ? `unknown option(s) ${issue.keys.map((k) => `'${k}'`).join(', ')}`
      : `${issue?.message ?? 'invalid'}, got ${received === undefined ? '`undefined`' : shown(received)}`;
  throw new UsageError('ERR_INVALID_OPTION', `Option '${prefix}${path ? '.' + path : ''}': ${detail}`, {
    context: { stage: prefix, option: path },
  });
}
