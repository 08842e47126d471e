import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startSite, type Site } from '../fixtures/site.ts';
import { pollUntil, startCli } from '../helpers/cli.ts';
import { listShardTars, tempDir } from '../helpers/corpus.ts';
import { screenOf, startCliInTerminal } from '../helpers/terminal.ts';

let site: Site;
let work: { path: string; remove: () => Promise<void> };

beforeAll(async () => {
  // Slow images: the download is still running when Ctrl-C is pressed.
  site = await startSite({ gallery: 300, imageDelayMs: 50 });
  work = await tempDir('interrupt');
});

afterAll(async () => {
  await site.close();
  await work.remove();
});

describe('Ctrl-C at a terminal', () => {
  test('stops the progress bar where it was and says so in one line under it, then the summary', async () => {
    const run = startCliInTerminal([
      'crawl',
      '--pages',
      site.url('/gallery/index.html'),
      '--out',
      `${work.path}/corpus`,
      '--allow-private-host',
      '127.0.0.1',
      '--concurrency',
      '8',
    ]);
    const downloading = await pollUntil(
      () => (run.output().includes('download [') ? true : undefined),
      () => run.hasExited(),
    );
    expect(downloading, run.output()).toBe(true);
    run.type('\x03');
    const { code, output } = await run.exited;
    expect(code, output).toBe(130);

    const screen = screenOf(output);
    const bar = screen.findIndex((line) => line.startsWith('download ['));
    expect(
      screen.filter((line) => line.startsWith('download [')),
      output,
    ).toHaveLength(1);
    expect(screen.slice(bar + 1, bar + 2)).toEqual([
      'SIGINT: finishing the items in flight; press Ctrl-C again to stop at once',
    ]);
    expect(screen.slice(bar + 2)).toEqual([expect.stringMatching(/^crawl interrupted: 13 pages, 300 new pairs, /)]);
  });

  test('is one line in a log too, with no blank line before it, then the summary', async () => {
    const out = `${work.path}/logged`;
    const run = startCli([
      'crawl',
      '--pages',
      site.url('/gallery/index.html'),
      '--out',
      out,
      '--allow-private-host',
      '127.0.0.1',
      '--concurrency',
      '8',
      '--shard-size',
      '40',
    ]);
    const shard = await pollUntil(
      async () => ((await listShardTars(out)).length > 0 ? true : undefined),
      run.hasExited,
    );
    expect(shard).toBe(true);
    run.signal('SIGTERM');
    const { code, stderr } = await run.exited;
    expect(code, stderr).toBe(130);
    expect(stderr.split('\n')).toEqual([
      'SIGTERM: finishing the items in flight; a second SIGTERM (or Ctrl-C) stops at once',
      expect.stringMatching(/^crawl interrupted: 13 pages, 300 new pairs, /),
      '',
    ]);
  });
});
