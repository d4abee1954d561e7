/** Human rendering of a verification result for `xpkg verify` (the JSON form is the result itself). */
import { formatBytes } from '../pack/inspect.js';
import type { VerifyResult } from './verify.js';

const short = (keyid: string) => `${keyid.slice(0, 16)}…`;

export function renderVerifyResult(r: VerifyResult): string {
  const s = r.signatures;
  const lines = [
    `OK ${r.name}@${r.version} (sequence ${r.sequence}) ${r.packageId}`,
    `  integrity:  ${r.integrity.files} files, ${formatBytes(r.integrity.bytes)} checked in ${r.integrity.ms.toFixed(0)} ms`,
  ];
  if (s.status === 'verified') {
    lines.push(`  signatures: verified, ${s.signers.length} trusted of ${s.threshold} required`);
    for (const k of s.signers) lines.push(`    signed by ${short(k.keyid)} (${k.source})`);
  } else if (s.status === 'unsigned') {
    lines.push('  signatures: NONE — accepted only because of --allow-unsigned');
  } else {
    lines.push('  signatures: NOT TRUSTED — accepted only because of --allow-unsigned');
  }
  if (s.untrusted.length) lines.push(`    untrusted (ignored): ${s.untrusted.map(short).join(', ')}`);
  if (s.revoked.length) lines.push(`    revoked (ignored):   ${s.revoked.map(short).join(', ')}`);
  for (const d of s.downgrades) {
    lines.push(
      `  DOWNGRADE accepted (--allow-downgrade): sequence ${d.sequence} < ${d.highest} already accepted from ${short(d.keyid)}`,
    );
  }
  if (s.expires) lines.push(`  expires:    ${s.expires}`);
  return lines.join('\n');
}
