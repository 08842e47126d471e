/**
 * The one error hierarchy of altforge. Every error carries a stable `code` that callers and tests
 * match on, an optional `cause`, and the context it happened in. Subclasses say what the caller
 * should do about it: fix the input (usage), skip the item, retry, or stop.
 */

/** Where an error happened; every field optional. */
export interface ErrorContext {
  stage?: string;
  url?: string;
  shard?: number;
  path?: string;
  option?: string;
}

/** Base class: a stable machine-readable code plus a human message. */
export class AltforgeError extends Error {
  override name = 'AltforgeError';
  readonly code: string;
  readonly context: ErrorContext;

  constructor(code: string, message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.context = options.context ?? {};
  }
}

/**
 * The caller gave something unusable (an option, an input file, an output directory).
 * Nothing has been written when it is thrown; the CLI prints it on one line and exits 2.
 */
export class UsageError extends AltforgeError {
  override name = 'UsageError';
}

/** A single item failed for good (a 404, an undecodable image): record it and move on. */
export class SkipItemError extends AltforgeError {
  override name = 'SkipItemError';
  /** The short status recorded in the manifest (`http_404`, `decode_error`...). */
  readonly status: string;
  constructor(status: string, message: string, options: { cause?: unknown; context?: ErrorContext } = {}) {
    super(`ERR_ITEM_${status.toUpperCase()}`, message, options);
    this.status = status;
  }
}

/** A transient failure (a timeout, a 503): worth another attempt after a pause. */
export class RetryableError extends SkipItemError {
  override name = 'RetryableError';
  /** Milliseconds the server asked us to wait (Retry-After), if it said. */
  readonly retryAfterMs: number | undefined;
  constructor(
    status: string,
    message: string,
    options: { cause?: unknown; context?: ErrorContext; retryAfterMs?: number } = {},
  ) {
    super(status, message, options);
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** Something is broken beyond one item (a corrupt manifest, a full disk): stop the stage. */
export class CriticalError extends AltforgeError {
  override name = 'CriticalError';
}

/** Formats a value for an error message the way users typed it. */
export function shown(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return '`' + (text.length > 80 ? text.slice(0, 77) + '...' : text) + '`';
}
