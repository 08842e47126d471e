import type { LookupFunction } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pLimit, { type LimitFunction } from 'p-limit';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import { RetryableError, SkipItemError } from '../corpus/errors.ts';
import { checkLiteralHost, guardedLookup, isGuardLifted } from './_net-guard.ts';
import { RobotsCache } from './_robots-cache.ts';

/** The fetch settings of a crawl (a subset of the resolved crawl options). */
export interface FetchPolicy {
  userAgent: string;
  concurrency: number;
  perHostConcurrency: number;
  perHostRate: number;
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
  maxBodyBytes: number;
  maxRedirects: number;
  retries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  respectRobots: boolean;
  respectXRobotsTag: boolean;
  allowPrivateNetwork: boolean | string[];
  signal?: AbortSignal | undefined;
}

/** A successful response, body read in full. */
export interface Fetched {
  /** The URL finally answered, after redirects. */
  url: string;
  status: number;
  contentType: string;
  body: Buffer;
}

/** X-Robots-Tag directives that opt an image out of dataset use, as img2dataset honours them. */
const OPT_OUT = new Set(['noai', 'noimageai', 'noindex', 'noimageindex']);

/** Our robot's name in robots directives: the user agent's product, lower case (`altforge`). */
export function robotName(userAgent: string): string {
  return userAgent.split('/')[0]?.trim().toLowerCase() ?? '';
}

/**
 * True when an X-Robots-Tag header opts out of our use. Directives may be scoped to a robot
 * (`googlebot: noindex`); those count only when the robot is us.
 */
export function isOptedOut(header: string | string[] | undefined, userAgent: string): boolean {
  if (header === undefined) return false;
  const product = robotName(userAgent);
  for (const value of Array.isArray(header) ? header : [header]) {
    let scope: string | null = null;
    for (const raw of value.split(',')) {
      let part = raw.trim().toLowerCase();
      const colon = /^([a-z0-9_-]+)\s*:\s*(.*)$/.exec(part);
      if (
        colon?.[1] !== undefined &&
        !['unavailable_after', 'max-snippet', 'max-image-preview', 'max-video-preview'].includes(colon[1])
      ) {
        scope = colon[1];
        part = colon[2] ?? '';
      }
      if (OPT_OUT.has(part) && (scope === null || scope === product)) return true;
    }
  }
  return false;
}

/** Parses Retry-After (seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function headerValue(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Maps a network-level failure to a manifest status, retryable when a second try may succeed. */
export function classifyNetworkError(err: unknown, url: string): SkipItemError {
  if (err instanceof SkipItemError) return err;
  const e = err as { code?: string; message?: string; cause?: unknown };
  const code = e.code ?? (e.cause as { code?: string } | undefined)?.code ?? '';
  const message = e.message ?? String(err);
  const context = { url };
  if (
    err instanceof undiciErrors.ConnectTimeoutError ||
    err instanceof undiciErrors.HeadersTimeoutError ||
    err instanceof undiciErrors.BodyTimeoutError ||
    code === 'ETIMEDOUT'
  ) {
    return new RetryableError('timeout', message, { cause: err, context });
  }
  if (code === 'ENOTFOUND') return new SkipItemError('dns_error', message, { cause: err, context });
  // The resolver gave no answer in time (not that the name does not exist): a later try may get one.
  if (code === 'EAI_AGAIN') return new RetryableError('dns_timeout', message, { cause: err, context });
  return new RetryableError('connection_error', `${code ? code + ': ' : ''}${message}`, { cause: err, context });
}

/**
 * Fetches URLs politely and safely: global and per-host concurrency, an optional per-host rate,
 * robots.txt and X-Robots-Tag, connect/headers/body timeouts, a body size cap, manual redirects
 * (each hop re-checked), retries with exponential backoff and jitter honouring Retry-After, and
 * an SSRF guard on the address actually connected to.
 */
export class Fetcher {
  readonly policy: FetchPolicy;
  private readonly guarded: Agent;
  private readonly open: Agent;
  private readonly global: LimitFunction;
  private readonly hosts = new Map<string, { limit: LimitFunction; next: number; interval: number }>();
  readonly robots: RobotsCache;

  constructor(policy: FetchPolicy) {
    this.policy = policy;
    const common = {
      headersTimeout: policy.headersTimeoutMs,
      bodyTimeout: policy.bodyTimeoutMs,
      keepAliveTimeout: 10_000,
    };
    this.guarded = new Agent({
      ...common,
      connect: { timeout: policy.connectTimeoutMs, lookup: guardedLookup as unknown as LookupFunction },
    });
    this.open = new Agent({ ...common, connect: { timeout: policy.connectTimeoutMs } });
    this.global = pLimit(policy.concurrency);
    this.robots = new RobotsCache((url) => this.fetchOnce(url, 'robots'), policy.userAgent);
  }

  private host(hostKey: string) {
    let h = this.hosts.get(hostKey);
    if (h === undefined) {
      if (this.hosts.size >= 50_000) this.forgetIdleHosts();
      h = {
        limit: pLimit(this.policy.perHostConcurrency),
        next: 0,
        interval: this.policy.perHostRate > 0 ? 1000 / this.policy.perHostRate : 0,
      };
      this.hosts.set(hostKey, h);
    }
    return h;
  }

  /**
   * Fetches `url` with retries; resolves with the body or throws a SkipItemError whose `status`
   * is what the manifest records (`http_404`, `timeout`, `robots_disallowed`...).
   */
  async fetch(url: string, kind: 'image' | 'page'): Promise<Fetched> {
    let attempt = 0;
    for (;;) {
      try {
        return await this.fetchOnce(url, kind);
      } catch (err) {
        const failure = classifyNetworkError(err, url);
        if (failure instanceof RetryableError && this.policy.signal?.aborted) {
          throw new SkipItemError('aborted', 'Interrupted before a retry', { cause: failure, context: { url } });
        }
        if (!(failure instanceof RetryableError) || attempt >= this.policy.retries) throw failure;
        const backoff = this.policy.retryBaseMs * 2 ** attempt * (0.5 + Math.random());
        const wait = failure.retryAfterMs ?? backoff;
        if (wait > this.policy.retryMaxMs) throw failure;
        attempt++;
        try {
          await sleep(wait, undefined, this.policy.signal ? { signal: this.policy.signal } : {});
        } catch {
          throw new SkipItemError('aborted', 'Interrupted while waiting to retry', {
            cause: failure,
            context: { url },
          });
        }
      }
    }
  }

  /** One attempt, following redirects; `robots` fetches skip the robots and opt-out checks. */
  private async fetchOnce(startUrl: string, kind: 'image' | 'page' | 'robots'): Promise<Fetched> {
    let current = startUrl;
    for (let hop = 0; ; hop++) {
      let url: URL;
      try {
        url = new URL(current);
      } catch {
        throw new SkipItemError('invalid_url', `Not a URL: ${current}`, { context: { url: current } });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') {
        throw new SkipItemError('invalid_url', `Only http(s) URLs are fetched, got ${url.protocol}`, {
          context: { url: current },
        });
      }
      const lifted = isGuardLifted(url, this.policy.allowPrivateNetwork);
      if (!lifted) checkLiteralHost(url);
      if (kind !== 'robots' && this.policy.respectRobots) {
        const verdict = await this.robots.check(url);
        if (!verdict.allowed) {
          throw new SkipItemError(verdict.status, verdict.reason, { context: { url: current } });
        }
        if (verdict.crawlDelayMs > 0) {
          const h = this.host(url.host);
          h.interval = Math.max(h.interval, verdict.crawlDelayMs);
        }
      }
      const response = await this.request(url, lifted, kind);
      if (response.status >= 300 && response.status < 400 && response.location !== undefined) {
        if (hop >= this.policy.maxRedirects) {
          throw new SkipItemError(
            'too_many_redirects',
            `More than ${this.policy.maxRedirects} redirects from ${startUrl}`,
            {
              context: { url: startUrl },
            },
          );
        }
        current = new URL(response.location, url).href;
        continue;
      }
      return { url: url.href, status: response.status, contentType: response.contentType, body: response.body };
    }
  }

  private async request(
    url: URL,
    lifted: boolean,
    kind: 'image' | 'page' | 'robots',
  ): Promise<{ status: number; contentType: string; body: Buffer; location?: string }> {
    const host = this.host(url.host);
    // The rate wait happens holding only the host's slot, so a slow host never ties up the
    // global slots that other hosts could use.
    return host.limit(async () => {
      if (host.interval > 0) {
        const now = Date.now();
        const start = Math.max(now, host.next);
        host.next = start + host.interval;
        if (start > now) await sleep(start - now);
      }
      return this.global(() => this.exchange(url, lifted ? this.open : this.guarded, kind));
    });
  }

  /**
   * One HTTP exchange through undici's dispatcher, its body copied as it arrives into one buffer
   * of the declared length (no stream, no chunk list, no second copy). A body we will not use is
   * read on and dropped up to 64 KiB, so the connection can be reused, and cut off past that.
   */
  private exchange(
    url: URL,
    dispatcher: Agent,
    kind: 'image' | 'page' | 'robots',
  ): Promise<{ status: number; contentType: string; body: Buffer; location?: string }> {
    const policy = this.policy;
    const context = { url: url.href };
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (
        err: unknown,
        value?: { status: number; contentType: string; body: Buffer; location?: string },
      ) => {
        if (settled) return;
        settled = true;
        if (err === null && value !== undefined) resolve(value);
        else reject(err);
      };
      let status = 0;
      let contentType = '';
      let body: Buffer | null = null;
      let chunks: Buffer[] | null = null;
      let size = 0;
      /** Past the response's start, the body is only read on to free the connection. */
      let discarding = false;
      const handler: Dispatcher.DispatchHandler = {
        // Its presence tells undici that this handler speaks the controller API.
        onRequestStart() {},
        onResponseStart(controller, statusCode, headers) {
          status = statusCode;
          const location = headerValue(headers, 'location');
          if (status >= 300 && status < 400 && location !== undefined) {
            discarding = true;
            settle(null, { status, contentType: '', body: Buffer.alloc(0), location });
            return;
          }
          if (status < 200 || status >= 300) {
            discarding = true;
            const message = `HTTP ${status} for ${url.href}`;
            if (status === 429 || status >= 500) {
              const retryAfterMs =
                status === 429 || status === 503 ? parseRetryAfter(headerValue(headers, 'retry-after')) : undefined;
              settle(
                new RetryableError(`http_${status}`, message, {
                  context,
                  ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
                }),
              );
            } else settle(new SkipItemError(`http_${status}`, message, { context }));
            return;
          }
          if (kind !== 'robots' && policy.respectXRobotsTag && isOptedOut(headers['x-robots-tag'], policy.userAgent)) {
            discarding = true;
            settle(new SkipItemError('opted_out', `X-Robots-Tag: ${String(headers['x-robots-tag'])}`, { context }));
            return;
          }
          const declared = Number(headerValue(headers, 'content-length') ?? NaN);
          if (declared > policy.maxBodyBytes) {
            settle(
              new SkipItemError('too_large', `Body of ${declared} bytes exceeds ${policy.maxBodyBytes}`, { context }),
            );
            discarding = true;
            controller.abort(new Error('body not wanted'));
            return;
          }
          contentType = headerValue(headers, 'content-type') ?? '';
          if (Number.isSafeInteger(declared) && declared >= 0) body = Buffer.allocUnsafe(declared);
          else chunks = [];
        },
        onResponseData(controller, chunk) {
          const end = size + chunk.length;
          if (discarding) {
            size = end;
            if (size > 64 * 1024) controller.abort(new Error('body not wanted'));
            return;
          }
          if (end > policy.maxBodyBytes) {
            settle(new SkipItemError('too_large', `Body exceeds ${policy.maxBodyBytes} bytes`, { context }));
            discarding = true;
            controller.abort(new Error('body not wanted'));
            return;
          }
          if (body !== null && end <= body.length) chunk.copy(body, size);
          else {
            // More than declared (undici rejects that itself) or no length: keep the chunks.
            chunks ??= body === null ? [] : [body.subarray(0, size)];
            body = null;
            chunks.push(chunk);
          }
          size = end;
        },
        onResponseEnd() {
          if (body !== null)
            settle(null, { status, contentType, body: size === body.length ? body : body.subarray(0, size) });
          else settle(null, { status, contentType, body: Buffer.concat(chunks ?? [], size) });
        },
        onResponseError(_controller, err) {
          settle(err);
        },
      };
      dispatcher.dispatch(
        {
          origin: url.origin,
          path: url.pathname + url.search,
          method: 'GET',
          headers: { 'user-agent': policy.userAgent, accept: kind === 'image' ? 'image/*,*/*;q=0.8' : '*/*' },
        },
        handler,
      );
    });
  }

  /** Drops the state of hosts with nothing queued and no rate wait pending (a WARC has millions). */
  private forgetIdleHosts(): void {
    const now = Date.now();
    for (const [key, h] of this.hosts) {
      if (h.limit.activeCount === 0 && h.limit.pendingCount === 0 && h.next <= now) this.hosts.delete(key);
    }
  }

  /** Closes every pooled connection. */
  async close(): Promise<void> {
    await Promise.all([this.guarded.close(), this.open.close()]);
  }
}
