/**
 * Browser twin of runner/reference.ts: pulling from an OCI registry into the local cache is a
 * Node feature (oci/); the browser entry opens Files, Blobs and URLs.
 */
import { BrowserError } from '../../spec/errors.js';

export async function resolveReference(reference: string): Promise<never> {
  throw new BrowserError(
    'E_BROWSER_UNSUPPORTED',
    `registry references (${reference}) are opened with the Node CLI or library`,
  );
}
