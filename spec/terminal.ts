/**
 * Text from a package (its name, description, license, labels, file names, output strings) as a
 * terminal shows it: control characters (ESC starts a colour, a title change or a cursor move; CR
 * overwrites a line), C1 controls, line and paragraph separators and bidi overrides / isolates
 * (text that displays as something it is not) are written as visible escapes. `--json` output
 * never goes through here: it carries the true strings, JSON-escaped.
 */

// C0 controls but tab and newline, DEL, C1 controls, line / paragraph separators, bidi marks,
// embeddings, overrides and isolates.
const OTHERS = '\\u000b-\\u001f\\u007f-\\u009f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\u200e\\u200f\\u061c';
const UNSAFE_KEEP_LINES = new RegExp(`[\\u0000-\\u0008${OTHERS}]`, 'g');
const UNSAFE_LINE = new RegExp(`[\\u0000-\\u0008\\u0009\\u000a${OTHERS}]`, 'g');

function visible(c: string): string {
  const j = JSON.stringify(c).slice(1, -1);
  return j.length > 1 ? j : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/** Multi-line human output: newlines and tabs stay, every other control is escaped. */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE_KEEP_LINES, visible);
}

/** One line of human output: a newline in it is escaped too, so it cannot forge another line. */
export function escapeLine(text: string): string {
  return text.replace(UNSAFE_LINE, visible);
}
