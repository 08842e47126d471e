/**
 * The examples each command's `--help` ends with, by command name (`bench add` for a nested one).
 * Each is a command of README.md, word for word (a README command continued over lines with `\`
 * is one line here); test/cli/examples.test.ts checks that every command has some, that each is in
 * the README, and that its flags parse with its command's own flags.
 */

/** One example: the command as the user types it, and what it does. */
export interface Example {
  /** One line or two on what it does, shown as a `#` comment above it. */
  comment?: string;
  command: string;
}

export const EXAMPLES: Readonly<Record<string, readonly Example[]>> = {
  crawl: [
    {
      comment: 'A bounded same-site crawl from seed pages (arguments, --pages, or a file of URLs)',
      command: 'npx altforge crawl https://example.org/gallery/ --max-depth 2 --max-pages 500 --out corpus/',
    },
    {
      comment: 'img2dataset-style URL lists: .jsonl .json .tsv .csv .parquet .txt (optionally .gz)',
      command: 'npx altforge crawl --urls laion-part.parquet --url-col URL --caption-col TEXT --out corpus/',
    },
    {
      comment: 'List the pairs of a Common Crawl WAT file only, download nothing',
      command: 'npx altforge crawl --warc file.wat.gz --no-download --out corpus/',
    },
  ],
  filter: [
    {
      comment: "ALIGN's rules; prints the per-rule table and examples",
      command: 'npx altforge filter --corpus corpus/',
    },
    { comment: 'The breakdown only, nothing written', command: 'npx altforge filter --corpus corpus/ --dry-run' },
    {
      comment: "DataComp's basic filter, without the NSFW classifier",
      command: 'npx altforge filter --corpus corpus/ --preset datacomp-basic --nsfw none',
    },
  ],
  bench: [
    {
      comment: "Register an emoji vendor's drawings from its installed npm package",
      command: 'npx altforge bench add --name emoji-twitter --emoji twitter',
    },
    { comment: 'The registered test sets', command: 'npx altforge bench list' },
    { command: 'npx altforge bench remove --name my-eval' },
  ],
  'bench add': [
    {
      comment: 'A folder of images with a captions file (COCO .json, .jsonl, or image<TAB>caption lines)',
      command: 'npx altforge bench add --name my-set --images my-images/ --captions my-captions.jsonl',
    },
    {
      comment: 'Fashion-MNIST IDX (plain or .gz); the labels-idx1 file beside it is found automatically',
      command:
        'npx altforge bench add --name fashion-mnist-test --images /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz',
    },
    {
      comment: "An emoji vendor's drawings, each captioned with its Unicode name",
      command: 'npx altforge bench add --name emoji-twitter --emoji twitter',
    },
  ],
  'bench list': [
    { comment: 'Name, kind, images, unreadable, captions, complete, source', command: 'npx altforge bench list' },
    { command: 'npx altforge bench list --json' },
  ],
  'bench remove': [{ command: 'npx altforge bench remove --name my-eval' }],
  dedup: [
    {
      comment: 'Flag pairs that are near-duplicates of registered test images, or leak their captions',
      command: 'npx altforge dedup --corpus corpus/ --against flickr30k-test --against fashion-mnist-test',
    },
    {
      comment: 'Near-duplicate clusters inside the corpus: one pair per cluster is kept',
      command: 'npx altforge dedup --corpus corpus/ --within',
    },
    {
      comment: 'Thumbnails only, no second pass at full resolution',
      command: 'npx altforge dedup --corpus corpus/ --against flickr30k-test --no-second-pass',
    },
  ],
  export: [
    { command: 'npx altforge export --corpus corpus/ --out corpus-kept/ --shard-size 10000' },
    {
      comment: 'Two parts into one export, test-set duplicates too',
      command: 'npx altforge export --corpus part-a/ --corpus part-b/ --out kept/ --include-duplicates',
    },
  ],
  train: [
    { command: 'npx altforge train --corpus /tmp/demo/corpus --out /tmp/run --epochs 5 --batch-size 128' },
    {
      comment: 'Noise-robust, with noise completion',
      command:
        'npx altforge train --corpus /tmp/demo/corpus --out /tmp/run-nlip --robust nlip --warmup-epochs 2 --completion',
    },
    {
      comment: 'Continue a run to 10 epochs (its batch size again; the schedule is recomputed)',
      command: 'npx altforge train --corpus /tmp/demo/corpus --out /tmp/run --epochs 10 --batch-size 128 --resume',
    },
  ],
  score: [
    {
      comment: 'Writes pairs.noise_prob and pairs.completed_caption',
      command: 'npx altforge score --corpus /tmp/demo/corpus --checkpoint /tmp/run-nlip',
    },
    {
      comment: 'A catalogue whose captions repeat (product names, class templates): caption agreement',
      command:
        'npx altforge score --corpus catalogue/ --checkpoint /tmp/run-cat --noise-signal agreement --agreement-neighbours 5',
    },
    {
      comment: 'Web alt-text, captions unique but words shared',
      command: 'npx altforge score --corpus /tmp/demo/corpus --checkpoint /tmp/run --noise-signal words',
    },
  ],
  eval: [
    { command: 'npx altforge eval --checkpoint /tmp/run --benchmark fashion-mnist-test --benchmark emoji-twitter' },
    {
      comment: 'Your own classification prompts, the result as JSON',
      command:
        "npx altforge eval --checkpoint /tmp/run --benchmark fashion-mnist-test --template 'a photo of a {}.' --template 'a {} in black and white.' --json",
    },
    {
      comment: 'At most 500 images, results stored in a database of your choice',
      command:
        'npx altforge eval --checkpoint /tmp/run/checkpoint.ckpt --benchmark emoji-twitter --limit 500 --results-db results.sqlite',
    },
  ],
  compare: [
    {
      comment: 'A built-in offline setting',
      command:
        'npx altforge compare --setting fashion-mnist --out /tmp/cmp-fm --noise-rates 0,0.2,0.5 --seeds 2 --train-pairs 2000 --epochs 8 --batch-size 64',
    },
    {
      comment: 'Your corpus, evaluated on registered benchmarks',
      command:
        'npx altforge compare --corpus /tmp/demo/corpus --benchmark emoji-twitter --out /tmp/cmp --noise-rates 0,0.2,0.5 --seeds 2 --steps 400',
    },
    {
      comment: "A third seed added to the first example's comparison: only seed 3 trains",
      command:
        'npx altforge compare --setting fashion-mnist --out /tmp/cmp-fm --noise-rates 0,0.2,0.5 --seeds 3 --train-pairs 2000 --epochs 8 --batch-size 64',
    },
  ],
  report: [
    {
      comment: 'A corpus, its training runs and a comparison',
      command:
        'npx altforge report --corpus /tmp/altforge-demo/corpus --runs /tmp/altforge-demo/runs/vanilla --runs /tmp/altforge-demo/runs/nlip --compare /tmp/altforge-demo/compare.json --bench-db /tmp/altforge-demo/benchmarks.sqlite --out /tmp/altforge-demo/report',
    },
  ],
  demo: [
    { command: 'npx altforge demo --out /tmp/altforge-demo' },
    {
      comment: 'Only the site and the crawl (~30 s)',
      command: 'npx altforge demo --out /tmp/d --up-to crawl',
    },
    {
      comment: 'A quick look (a minute or two)',
      command: 'npx altforge demo --out /tmp/small --images 300 --epochs 5',
    },
  ],
  doctor: [
    { command: 'npx altforge doctor' },
    {
      comment: 'Check one backend; exit 2 with the reason if it cannot start',
      command: 'npx altforge doctor --backend wasm',
    },
    { comment: 'Time a larger square product', command: 'npx altforge doctor --sgemm-size 2048' },
  ],
};

/** The words of a command as typed: split at spaces, a `'...'` quoted part kept in one word. */
export function typedWords(command: string): string[] {
  return command.match(/(?:'[^']*'|\S)+/g) ?? [];
}

/** The words of a command as a POSIX shell hands them to the program: quotes taken off. */
export function commandWords(command: string): string[] {
  return typedWords(command).map((word) => word.replace(/'([^']*)'/g, '$1'));
}
