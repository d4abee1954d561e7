/** RFC 3339 date-times, as the manifest's `expires` (FORMAT.md §4, SIGNATURES.md §6) uses them. */

/**
 * The instant (ms since the epoch) of an RFC 3339 `date-time`, or undefined when the text is not
 * one. Strict on purpose: ajv's format and Date.parse also take a space for `T` and `+0100` for
 * `+01:00`, which other verifiers (reading the schema's RFC 3339) refuse, so one manifest would be
 * valid to one verifier and not another. A leap second (`23:59:60`, RFC 3339 §5.7) means the next
 * instant Date can represent.
 */
export function rfc3339Instant(text: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|([+-])(\d{2}):(\d{2}))$/.exec(text);
  if (!m) return undefined;
  const [year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0] = m.slice(1, 7).map(Number);
  const offset = m[8] ? (m[8] === '-' ? -1 : 1) * (Number(m[9]) * 60 + Number(m[10])) : 0;
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    hour > 23 ||
    minute > 59 ||
    second > 60 ||
    Number(m[9] ?? 0) > 23 ||
    Number(m[10] ?? 0) > 59
  )
    return undefined;
  // setUTCFullYear, not Date.UTC: the latter reads years 0-99 as 1900-1999.
  const at = new Date(0);
  at.setUTCFullYear(year, month - 1, day);
  if (at.getUTCDate() !== day) return undefined; // 2025-02-30 rolled over into March
  at.setUTCHours(hour, minute, Math.min(second, 59));
  const utc = at.getTime() - offset * 60_000;
  if (second === 60) {
    // Only the last second of a UTC day can be a leap second.
    const u = new Date(utc);
    if (u.getUTCHours() !== 23 || u.getUTCMinutes() !== 59) return undefined;
    return utc + 1000;
  }
  return utc + Math.floor(Number(`0${m[7] ?? ''}`) * 1000);
}
