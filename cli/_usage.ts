/**
 * Fits citty's usage text to the terminal: its tables pad every row to the longest one, so a
 * command's options ran 130 to 180 columns and wrapped mid-word. Each line is trimmed, and a long
 * one wrapped at spaces, an option's description under its own column.
 */

import { stripVTControlCharacters } from 'node:util';

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
