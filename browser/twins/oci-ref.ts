/**
 * Browser twin of oci/ref.ts as runner.ts uses it: a page opens a File, a Blob or a URL, never a
 * registry reference, so nothing is one (registry pulls need the Node cache: oci/).
 */
export const isReference = (_target: string): boolean => false;
