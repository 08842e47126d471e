/**
 * Fits citty's usage text to the terminal: its tables pad every row to the longest one, so a
 * command's options ran 130 to 180 columns and wrapped mid-word. Each line is trimmed, and a long
 * one wrapped at spaces, an option's description under its own column.
 */

import { stripVTControlCharacters } from 'node:util';
import { typedWords, type Example } from './_examples.ts';

/** The width a usage text is fitted to: the terminal's, or 100 columns when output is not one. */
export function usageWidth(stream: NodeJS.WriteStream = process.stdout): number {
  return stream.isTTY && stream.columns ? Math.max(60, stream.columns) : 100;
}

/** `text` with trailing spaces gone and each line longer than `width` wrapped. */
export function fitUsage(text: string, width: number): string {
  return text
    .split('\n')
    .map((line) => wrapLine(line.trimEnd(), width))
    .join('\n');
}

function visibleLength(text: string): number {
  return stripVTControlCharacters(text).length;
}

/**
 * Wraps one line at spaces. A table row (text, two or more spaces, text) continues under its second
 * column, or 8 columns in when that column starts too far right to leave room.
 */
function wrapLine(line: string, width: number): string {
  if (visibleLength(line) <= width) return line;
  // oxlint-disable-next-line no-control-regex -- a row may start with a colour code
  const row = /^((?:\s|\x1b\[[0-9;]*m)*[^\s\x1b].*?\s{2,})(\S.*)$/.exec(line);
  const head = row?.[1] ?? '';
  // A default stays whole: `(Default: 1)` is never split after its colon.
  const body = (row?.[2] ?? line).replace(/\(Default: /g, '(Default:\u00a0');
  let indent = visibleLength(head);
  if (indent > width - 30) indent = Math.min(indent, 8);
  const out: string[] = [];
  let current = head;
  let length = visibleLength(head);
  for (const word of body.split(' ')) {
    const w = visibleLength(word);
    if (length > indent && length + 1 + w > width) {
      out.push(current.trimEnd());
      current = ' '.repeat(indent);
      length = indent;
    }
    if (length > indent && !current.endsWith(' ')) {
      current += ' ';
      length += 1;
    }
    current += word;
    length += w;
  }
  out.push(current);
  return out.join('\n').replace(/\(Default:\u00a0/g, '(Default: ');
}

/**
 * The examples section of a command's usage, under `heading` (styled as the usage's own headings).
 * A comment is wrapped as comment lines; a command longer than `width` is continued with ` \\` on
 * the next line, broken before a flag so that a flag and its value stay together: it still pastes
 * into a shell as it is.
 */
export function renderExamples(examples: readonly Example[], heading: string, width: number): string {
  const out = [heading, ''];
  for (const [i, example] of examples.entries()) {
    if (i > 0) out.push('');
    if (example.comment !== undefined) out.push(...wrapWords(example.comment.split(' '), '  # ', '  # ', width, ''));
    // A flag with its values is one unit; the words before the first flag another.
    const units: string[] = [];
    for (const word of typedWords(example.command)) {
      if (units.length === 0 || word.startsWith('-')) units.push(word);
      else units[units.length - 1] += ` ${word}`;
    }
    out.push(...wrapWords(units, '  ', '      ', width, ' \\'));
  }
  return out.join('\n');
}

/**
 * `words` joined by spaces into lines of at most `width` columns (a longer word alone overruns it):
 * the first line starts with `first`, the others with `next`, and each but the last ends with `end`.
 */
function wrapWords(words: string[], first: string, next: string, width: number, end: string): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const [i, word] of words.entries()) {
    const room = width - (i === words.length - 1 ? 0 : end.length);
    if (!empty && line.length + 1 + word.length > room) {
      lines.push(line + end);
      line = next;
      empty = true;
    }
    line += empty ? word : ` ${word}`;
    empty = false;
  }
  lines.push(line);
  return lines;
}
