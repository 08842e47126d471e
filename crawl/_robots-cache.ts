import robotsParserModule from 'robots-parser';
import { SkipItemError } from '../corpus/errors.ts';

// robots-parser is CommonJS whose typings declare an ES default export: at run time the default
// import is the function itself.
const robotsParser = robotsParserModule as unknown as typeof robotsParserModule.default;
type Robot = ReturnType<typeof robotsParser>;

/** The verdict of robots.txt on one URL. */
export interface RobotsVerdict {
  allowed: boolean;
  /**
   * Manifest status when refused: `robots_disallowed` (the rules say no), `robots_unreachable`
   * (robots.txt could not be read: the host may only have been down), or the guard's refusal.
   */
  status: string;
  reason: string;
  crawlDelayMs: number;
}

type Entry =
  { kind: 'rules'; robot: Robot } | { kind: 'allow-all' } | { kind: 'refuse'; status: string; reason: string };

/** Most origins whose robots.txt is kept in memory; the oldest is dropped first. */
const MAX_ORIGINS = 10_000;

/**
 * robots.txt per origin, fetched once and cached (RFC 9309): a 4xx means no rules, a 5xx or an
 * unreachable file means complete disallow, recorded as `robots_unreachable` rather than as a
 * refusal by the site, since a rerun may find the host up (`--retry-failed`). The fetch itself goes through the same guarded,
 * polite fetcher (never through robots, to avoid a loop).
 */
export class RobotsCache {
  private readonly entries = new Map<string, Promise<Entry>>();
  private readonly fetchText: (url: string) => Promise<{ body: Buffer }>;
  private readonly userAgent: string;

  constructor(fetchText: (url: string) => Promise<{ body: Buffer }>, userAgent: string) {
    this.fetchText = fetchText;
    this.userAgent = userAgent;
  }

  private load(origin: string): Promise<Entry> {
    let entry = this.entries.get(origin);
    if (entry === undefined) {
      const robotsUrl = `${origin}/robots.txt`;
      entry = this.fetchText(robotsUrl).then(
        ({ body }): Entry => ({ kind: 'rules', robot: robotsParser(robotsUrl, body.toString('utf8')) }),
        (err: unknown): Entry => {
          const status = err instanceof SkipItemError ? err.status : 'connection_error';
          if (/^http_4\d\d$/.test(status)) return { kind: 'allow-all' };
          if (status === 'private_address' || status === 'invalid_url') {
            return { kind: 'refuse', status, reason: (err as Error).message };
          }
          return {
            kind: 'refuse',
            status: 'robots_unreachable',
            reason: `robots.txt at ${robotsUrl} unreachable (${status}): treated as disallow-all`,
          };
        },
      );
      if (this.entries.size >= MAX_ORIGINS) {
        const oldest = this.entries.keys().next().value;
        if (oldest !== undefined) this.entries.delete(oldest);
      }
      this.entries.set(origin, entry);
    }
    return entry;
  }

  /** Whether our user agent may fetch `url`, and the crawl delay the site asks for. */
  async check(url: URL): Promise<RobotsVerdict> {
    const entry = await this.load(url.origin);
    if (entry.kind === 'allow-all') return { allowed: true, status: 'ok', reason: '', crawlDelayMs: 0 };
    if (entry.kind === 'refuse') return { allowed: false, status: entry.status, reason: entry.reason, crawlDelayMs: 0 };
    const allowed = entry.robot.isAllowed(url.href, this.userAgent) !== false;
    const delay = entry.robot.getCrawlDelay(this.userAgent) ?? 0;
    return {
      allowed,
      status: allowed ? 'ok' : 'robots_disallowed',
      reason: allowed ? '' : `robots.txt disallows ${url.pathname} for ${this.userAgent.split('/')[0]}`,
      crawlDelayMs: Math.min(delay, 60) * 1000,
    };
  }
}
