/**
 * Announces one `xpkg serve` as the DNS-SD service `<name>._xpkg._tcp.local` (RFC 6762/6763): PTR,
 * SRV, TXT and A records, sent unsolicited at start (twice, a second apart, RFC 6762 §8.3), again
 * whenever the TXT changes (at most once per `minIntervalMs`), and in answer to queries. `close()`
 * sends the same records with TTL 0 (a goodbye), so browsers forget the peer at once.
 * No name probing: the default name holds the host name and port, and `--announce-name` is the
 * operator's to keep unique.
 */
import type { Answer, Question } from 'dns-packet';
import { FabricError } from '../../spec/errors.js';
import { closeMdns, type Mdns, type MdnsOptions, openMdns, type Warn } from './mdns.js';
import { SERVICE_TYPE } from './txt.js';

export interface AnnouncerOptions extends MdnsOptions {
  /** Instance name: one DNS label (1–63 bytes, no dot). */
  name: string;
  /** The HTTP port peers call. */
  port: number;
  /** IPv4 addresses the HTTP server is reachable at (A records). */
  addresses: string[];
  /** Record TTL in seconds (default 120): a browser forgets a silent peer after it. */
  ttlSec?: number;
  /** Least time between two announcements of a changed TXT (default 1000 ms). */
  minIntervalMs?: number;
  warn?: Warn;
}

/** Answers to queries go out at most this often: a storm of questions gets one multicast answer (RFC 6762 §6). */
const QUERY_INTERVAL_MS = 250;
const LABEL = /^[^.\s\\][^.\\]{0,62}$/;

export function checkInstanceName(name: string): void {
  if (!LABEL.test(name) || Buffer.byteLength(name) > 63)
    throw new FabricError(
      'E_FABRIC_CONFIG',
      `announce name ${JSON.stringify(name)} must be one DNS label: 1 to 63 bytes, no dot or backslash`,
      { name },
    );
}

export class Announcer {
  private txt: Buffer[];
  private lastSent = 0;
  private pending: NodeJS.Timeout | undefined;
  private timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private readonly fqdn: string;
  private readonly target: string;

  private constructor(
    private readonly m: Mdns,
    private readonly o: AnnouncerOptions,
    txt: Buffer[],
  ) {
    this.txt = txt;
    this.fqdn = `${o.name}.${SERVICE_TYPE}`;
    this.target = `${o.name}.local`;
    m.on('query', (q) => this.onQuery(q.questions ?? []));
  }

  static async start(o: AnnouncerOptions, txt: Buffer[]): Promise<Announcer> {
    checkInstanceName(o.name);
    const warn = o.warn ?? (() => {});
    const a = new Announcer(await openMdns(o, warn), o, txt);
    a.send();
    a.later(1000, () => a.send());
    return a;
  }

  get name(): string {
    return this.o.name;
  }

  private records(ttl: number): Answer[] {
    return [
      { name: SERVICE_TYPE, type: 'PTR', ttl, data: this.fqdn },
      { name: this.fqdn, type: 'SRV', ttl, data: { port: this.o.port, target: this.target } },
      { name: this.fqdn, type: 'TXT', ttl, data: this.txt },
      ...this.o.addresses.map((a): Answer => ({ name: this.target, type: 'A', ttl, data: a })),
    ];
  }

  private get ttl(): number {
    return this.o.ttlSec ?? 120;
  }

  private send(): void {
    if (this.closed) return;
    this.lastSent = Date.now();
    this.m.respond({ answers: this.records(this.ttl) });
  }

  private later(ms: number, f: () => void): NodeJS.Timeout {
    const t = setTimeout(() => {
      this.timers.delete(t);
      f();
    }, ms);
    t.unref();
    this.timers.add(t);
    return t;
  }

  private onQuery(questions: Question[]): void {
    // dns-packet reports QTYPE 255 as 'ANY', which its types leave out
    const asked = questions.some((q) => {
      const name = q.name.toLowerCase();
      const type = String(q.type);
      return (
        (name === SERVICE_TYPE && (type === 'PTR' || type === 'ANY')) ||
        (name === this.fqdn.toLowerCase() && (type === 'SRV' || type === 'TXT' || type === 'ANY'))
      );
    });
    if (asked) this.sendSoon(QUERY_INTERVAL_MS);
  }

  /** Sends now, or once `gap` ms have passed since the last send (one pending send covers every ask meanwhile). */
  private sendSoon(gap: number): void {
    if (this.pending) return;
    const wait = this.lastSent + gap - Date.now();
    if (wait <= 0) this.send();
    else
      this.pending = this.later(wait, () => {
        this.pending = undefined;
        this.send();
      });
  }

  /** New TXT strings (capacity or packages changed): announced now, or once the rate limit allows. */
  update(txt: Buffer[]): void {
    if (this.closed || (txt.length === this.txt.length && txt.every((b, i) => b.equals(this.txt[i])))) return;
    this.txt = txt;
    this.sendSoon(this.o.minIntervalMs ?? 1000);
  }

  /** Sends the goodbye (every record with TTL 0) and closes the socket. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    await new Promise<void>((resolve) => this.m.respond({ answers: this.records(0) }, () => resolve()));
    await closeMdns(this.m);
  }
}
