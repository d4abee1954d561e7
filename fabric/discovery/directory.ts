/**
 * `MdnsPeerDirectory`: the peers a device can offload to. It browses `_xpkg._tcp` (and/or reads a
 * static list of URLs), then fetches each peer's document (`GET /v2/xpkg/peer`: whole host profile,
 * every package id) — that fetch is also the first health probe. A peer is listed only once its
 * document is read, and forgotten a second after it says goodbye (TTL 0) unless it answers the question
 * that follows (anyone can send a goodbye), when its records' TTL runs out
 * without a fresh answer (the directory re-asks at half the TTL), or when `markDown(id)` is called
 * (a failed call or probe); a marked peer is ignored for `downMs`. A malformed announcement or
 * document is ignored with its reason logged once, never thrown.
 */
import type { Answer } from 'dns-packet';
import type { PeerDirectory, PeerInfo } from '../contract.js';
import { closeMdns, type Mdns, type MdnsOptions, openMdns, type Warn } from './mdns.js';
import { fetchPeerDocument, type PeerDocument } from './peer-doc.js';
import { type Announcement, decodeTxt, SERVICE_TYPE } from './txt.js';

export interface DirectoryLog {
  info: Warn;
  warn: Warn;
}

export interface DirectoryOptions extends MdnsOptions {
  /** Browse mDNS (default true when no static peers are given). */
  discover?: boolean;
  /** Static peers: base URLs (`http://host:port`), probed every `staticRefreshMs`. */
  peers?: readonly string[];
  /** How long a peer marked down is ignored (default 30 s). */
  downMs?: number;
  /** Time limit of a document fetch (default 2 s). */
  fetchTimeoutMs?: number;
  /** Period of the expiry check and refresh queries (default 500 ms). */
  tickMs?: number;
  staticRefreshMs?: number;
  /**
   * Sent with document fetches to the peers given by URL (a bearer token, when peers want one);
   * never to an address an mDNS announcement names, which anyone on the link can send.
   */
  headers?: Record<string, string>;
  log?: DirectoryLog;
}

interface Entry {
  key: string;
  source: 'mdns' | 'static';
  url?: string;
  srv?: { port: number; target: string };
  address?: string;
  txt?: Announcement;
  seen: number;
  ttlMs: number;
  doc?: PeerDocument;
  /** The url and digest the document was fetched for: another announcement of either fetches again. */
  docFor?: string;
  fetching?: boolean;
  downUntil?: number;
  /** When a goodbye (TTL 0) takes effect, unless the peer answers meanwhile (RFC 6762 §10.1). */
  byeAt?: number;
}

const SUFFIX = `.${SERVICE_TYPE}`;
/** Bounds on what the network can make the directory hold: instances, and how long one lives unheard. */
const MAX_ENTRIES = 1024;
const MAX_TTL_S = 75 * 60;
/** Distinct reasons logged: a network varying its malformed announcements must not grow memory or the log without end. */
const MAX_WARNED = 256;
/**
 * A goodbye is acted on a second later, after asking once more (RFC 6762 §10.1): anyone on the link
 * can send one for any peer, and a live peer answers the question and stays.
 */
const GOODBYE_MS = 1000;
const lower = (s: string) => s.toLowerCase();

/**
 * Whether an announced IPv4 address is one a device may call: a unicast address, and loopback only
 * when the announcement came from loopback (a host on the LAN must not point a device at its own
 * local services). 0.0.0.0/8 reaches the device itself too; multicast, reserved and broadcast
 * addresses are no peer's.
 */
export function reachable(address: string, from: string): boolean {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(address);
  if (!m || m.slice(1).some((o) => Number(o) > 255)) return false;
  const first = Number(m[1]);
  if (first === 0 || first >= 224) return false;
  return first !== 127 || from.startsWith('127.');
}

export class MdnsPeerDirectory implements PeerDirectory {
  private readonly entries = new Map<string, Entry>();
  private readonly listeners = new Set<(peers: PeerInfo[]) => void>();
  private readonly warned = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private staticTimer: NodeJS.Timeout | undefined;
  private lastQuery = 0;
  private signature = '[]';
  private closed = false;

  private constructor(
    private readonly m: Mdns | undefined,
    private readonly o: DirectoryOptions,
  ) {}

  static async start(o: DirectoryOptions = {}): Promise<MdnsPeerDirectory> {
    const log = o.log ?? { info: () => {}, warn: () => {} };
    const discover = o.discover ?? !o.peers?.length;
    const m = discover ? await openMdns(o, log.warn) : undefined;
    const d = new MdnsPeerDirectory(m, { ...o, log });
    if (m) {
      m.on('response', (p, rinfo) => d.onResponse([...(p.answers ?? []), ...(p.additionals ?? [])], rinfo.address));
      d.query();
      // a second question in case the first went out before every peer's membership (RFC 6762 §5.2 repeats too)
      setTimeout(() => d.closed || d.query(), 1000).unref();
    }
    for (const url of o.peers ?? []) {
      const key = url.replace(/\/+$/, '');
      d.entries.set(key, { key, source: 'static', url: key, seen: Date.now(), ttlMs: Number.POSITIVE_INFINITY });
    }
    d.probeStatic();
    d.timer = setInterval(() => d.tick(), o.tickMs ?? 500);
    d.timer.unref();
    if (o.peers?.length) {
      d.staticTimer = setInterval(() => d.probeStatic(), o.staticRefreshMs ?? 10_000);
      d.staticTimer.unref();
    }
    return d;
  }

  private get log(): DirectoryLog {
    return this.o.log!;
  }

  list(): PeerInfo[] {
    const now = Date.now();
    const out: PeerInfo[] = [];
    for (const e of this.entries.values()) {
      if (!e.doc || !e.url || (e.downUntil ?? 0) > now) continue;
      out.push({
        id: e.doc.name,
        url: e.url,
        host: e.doc.host,
        // the TXT record is fresher than the document for capacity; ids come from the document
        packages: e.doc.packages.map((p) => p.id),
        free: e.txt && e.txt.digest === e.doc.digest ? e.txt.free : e.doc.free,
        seen: e.seen,
        profile: e.doc.profile,
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  onChange(listener: (peers: PeerInfo[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** A call or probe to this peer failed: forget it for `forMs` (the peer's Retry-After) or `downMs`, then ask it again. */
  markDown(id: string, reason = 'marked down', forMs?: number): void {
    for (const e of this.entries.values())
      if (e.doc?.name === id || e.key === id) {
        e.downUntil = Date.now() + (forMs ?? this.o.downMs ?? 30_000);
        e.doc = undefined;
        e.docFor = undefined;
        this.log.info({ peer: id, reason }, 'peer down');
      }
    this.changed();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    clearInterval(this.staticTimer);
    this.listeners.clear();
    if (this.m) await closeMdns(this.m);
  }

  private query(): void {
    this.lastQuery = Date.now();
    this.m?.query({ questions: [{ name: SERVICE_TYPE, type: 'PTR' }] });
  }

  private changed(): void {
    const peers = this.list();
    const sig = JSON.stringify(peers.map(({ seen: _, profile: __, ...p }) => p));
    if (sig === this.signature) return;
    this.signature = sig;
    for (const l of this.listeners) l(peers);
  }

  private ignore(key: string, reason: string): void {
    const k = `${key}\n${reason}`;
    if (this.warned.has(k) || this.warned.size > MAX_WARNED) return;
    this.warned.add(k);
    if (this.warned.size > MAX_WARNED)
      this.log.warn({ limit: MAX_WARNED }, 'many malformed peer announcements: no more are logged');
    else this.log.warn({ peer: key, reason }, 'ignored a peer announcement');
  }

  private forget(key: string, reason: string): void {
    const e = this.entries.get(key);
    if (e?.source !== 'mdns') return;
    this.entries.delete(key);
    if (e.doc) this.log.info({ peer: e.doc.name, reason }, 'peer gone');
    this.changed();
  }

  private onResponse(records: Answer[], from: string): void {
    if (this.closed) return;
    const now = Date.now();
    const addresses = new Map<string, string>();
    for (const r of records) if (r.type === 'A' && (r.ttl ?? 0) > 0) addresses.set(lower(r.name), String(r.data));
    const touched = new Set<string>();
    const instanceOf = (name: string) => {
      const n = lower(name);
      return n.endsWith(SUFFIX) && n.length > SUFFIX.length ? n.slice(0, -SUFFIX.length) : undefined;
    };
    const entry = (key: string) => {
      let e = this.entries.get(key);
      if (!e && this.entries.size >= MAX_ENTRIES) this.evictUnproven();
      if (!e && this.entries.size < MAX_ENTRIES)
        this.entries.set(key, (e = { key, source: 'mdns', seen: now, ttlMs: 0 }));
      return e;
    };
    for (const r of records) {
      const key =
        r.type === 'PTR' && lower(r.name) === SERVICE_TYPE
          ? instanceOf(String(r.data))
          : r.type === 'SRV' || r.type === 'TXT'
            ? instanceOf(r.name)
            : undefined;
      if (!key) continue;
      const ttl = 'ttl' in r ? (r.ttl ?? 0) : 0;
      if (ttl === 0) {
        const gone = this.entries.get(key);
        if (gone?.source === 'mdns' && gone.byeAt === undefined) {
          gone.byeAt = now + GOODBYE_MS;
          // rate-limited like the refresh queries: a flood of goodbyes is not a flood of questions
          if (now - this.lastQuery >= (this.o.tickMs ?? 500) / 2) this.query();
        }
        touched.delete(key);
        continue;
      }
      const e = entry(key);
      if (!e) {
        this.ignore(key, `more than ${MAX_ENTRIES} instances on the network`);
        continue;
      }
      e.seen = now;
      e.byeAt = undefined;
      const ms = Math.min(ttl, MAX_TTL_S) * 1000;
      e.ttlMs = e.ttlMs ? Math.min(e.ttlMs, ms) : ms;
      touched.add(key);
      if (r.type === 'SRV') {
        const d = r.data as { port?: unknown; target?: unknown };
        if (Number.isInteger(d.port) && (d.port as number) > 0 && typeof d.target === 'string')
          e.srv = { port: d.port as number, target: lower(d.target) };
        else this.ignore(key, 'SRV record without a port and target');
      } else if (r.type === 'TXT') {
        const t = decodeTxt(([] as (Buffer | string)[]).concat(r.data as Buffer | Buffer[]));
        if ('reason' in t) {
          this.ignore(key, t.reason);
          e.txt = undefined;
        } else e.txt = t;
      }
    }
    for (const key of touched) {
      const e = this.entries.get(key)!;
      const a = e.srv && addresses.get(e.srv.target);
      if (a !== undefined && !reachable(a, from)) {
        // the device would call this address: never its own loopback for a stranger, nor 0.0.0.0 (also itself)
        this.ignore(key, `address ${JSON.stringify(a.slice(0, 40))} from ${from}`);
        continue;
      }
      if (e.srv) e.address = a ?? e.address ?? from;
      if (!e.srv || !e.txt) {
        if (e.doc && !e.txt) {
          e.doc = undefined; // its TXT became malformed: not routable until it announces a valid one
          this.changed();
        }
        continue;
      }
      e.url = `${e.txt.scheme}://${e.address}:${e.srv.port}`;
      this.refresh(e);
    }
    this.changed();
  }

  /**
   * Full: the longest-unheard instance that never served a valid document makes room. Else a flood
   * of bogus instances (each living up to its TTL) would keep every real peer out.
   */
  private evictUnproven(): void {
    let victim: Entry | undefined;
    for (const e of this.entries.values())
      if (e.source === 'mdns' && !e.doc && !e.fetching && (!victim || e.seen < victim.seen)) victim = e;
    if (victim) this.entries.delete(victim.key);
  }

  /** Fetches the peer's document when it is new or its package list or address changed. */
  private refresh(e: Entry): void {
    const now = Date.now();
    if ((e.downUntil ?? 0) > now || e.fetching || !e.url) return;
    const want = `${e.url} ${e.txt?.digest ?? ''}`;
    if (e.source === 'mdns' && e.docFor === want) return;
    e.fetching = true;
    void fetchPeerDocument(e.url, {
      timeoutMs: this.o.fetchTimeoutMs ?? 2000,
      ...(this.o.headers && e.source !== 'mdns' ? { headers: this.o.headers } : {}),
    }).then((doc) => {
      e.fetching = false;
      if (this.closed || this.entries.get(e.key) !== e) return;
      if ('reason' in doc) {
        this.ignore(e.key, doc.reason);
        if (e.doc) this.markDown(e.doc.name, doc.reason);
        else e.downUntil = Date.now() + (this.o.downMs ?? 30_000);
        return;
      }
      if (e.source === 'mdns' && lower(doc.name) !== e.key) {
        this.ignore(e.key, `the document names ${JSON.stringify(doc.name)}`);
        return;
      }
      const fresh = !e.doc;
      e.doc = doc;
      e.docFor = want;
      e.downUntil = undefined;
      if (e.source === 'static') e.seen = Date.now();
      if (fresh) this.log.info({ peer: doc.name, url: e.url, packages: doc.packages.length }, 'peer found');
      this.changed();
    });
  }

  private probeStatic(): void {
    for (const e of this.entries.values()) if (e.source === 'static') this.refresh(e);
  }

  private tick(): void {
    const now = Date.now();
    let ask = false;
    for (const e of [...this.entries.values()]) {
      if (e.source !== 'mdns') {
        // a static peer back from being down is asked at once, not at the next periodic probe
        if ((e.downUntil ?? 0) !== 0 && (e.downUntil ?? 0) <= now && !e.doc) {
          e.downUntil = undefined;
          this.refresh(e);
        }
        continue;
      }
      if (e.byeAt !== undefined && now >= e.byeAt) this.forget(e.key, 'goodbye');
      else if (now > e.seen + e.ttlMs) this.forget(e.key, 'TTL ran out');
      // RFC 6762 §5.2 asks again from 80% of the TTL; half leaves room for a lost packet on a busy link
      else if (now > e.seen + e.ttlMs / 2) ask = true;
      else if ((e.downUntil ?? 0) !== 0 && (e.downUntil ?? 0) <= now && !e.doc) {
        e.downUntil = undefined;
        this.refresh(e);
      }
    }
    if (ask && now - this.lastQuery >= (this.o.tickMs ?? 500)) this.query();
    this.changed();
  }
}
