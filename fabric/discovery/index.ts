/** Peer discovery for split inference: announce a daemon, browse for peers (DNS-SD over mDNS). */
import { FabricError } from '../../spec/errors.js';
import { peerBaseUrl } from '../peers.js';
import { type DirectoryOptions, MdnsPeerDirectory } from './directory.js';

export { Announcer, type AnnouncerOptions, checkInstanceName } from './announce.js';
export { type DirectoryLog, type DirectoryOptions, MdnsPeerDirectory } from './directory.js';
export type { MdnsOptions } from './mdns.js';
export { checkPeerDocument, fetchPeerDocument, hostSummaryOf, type PeerDocument } from './peer-doc.js';
export { decodeTxt, encodeTxt, PEER_PATH, packagesDigest, SERVICE_TYPE } from './txt.js';

/**
 * The device side's directory: mDNS browsing (`discover`), static peers (`peers`: base URLs), or both.
 * Throws E_FABRIC_CONFIG when neither is asked for or a static URL is not http(s).
 */
export async function createPeerDirectory(o: DirectoryOptions & { discover?: boolean }): Promise<MdnsPeerDirectory> {
  const peers = o.peers ?? [];
  if (!o.discover && peers.length === 0)
    throw new FabricError('E_FABRIC_CONFIG', 'no peers: give --discover or at least one --peer URL');
  // checked and normalised as `xpkg run --peer` does (fabric/peers.ts), without a path prefix
  const urls = peers.map((p) => peerBaseUrl(p, { path: false }));
  return MdnsPeerDirectory.start({ ...o, discover: Boolean(o.discover), peers: urls });
}
