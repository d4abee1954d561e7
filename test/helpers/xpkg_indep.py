#!/usr/bin/env python3
"""An independent xpkg/1 writer and checker, written from spec/FORMAT.md and spec/SIGNATURES.md alone
(Python 3 stdlib only), so the TypeScript reader and writer are checked against the spec text and not
against themselves.

  xpkg_indep.py write <plan.json> <out.xpkg>   prints {"id": ...}
  xpkg_indep.py check <pkg.xpkg>               prints {"id": ..., "problems": [...]}

A plan is {"manifest": {... a manifest without format/blockSize/files},
           "files": {path: {"text": str} | {"hex": str} | {"zeros": n} | {"pattern": n}},
           "order": [paths] (payload order; default sorted), "deflate": [paths], "deflateManifest": bool,
           "dos": [time, date], "level": zlib level, "strategy": zlib strategy, "syncFlush": bool,
           "shim": [asset, model] (size the asset so the model needs a shim), "filesOrder": "utf16"}
"""
import base64
import hashlib
import json
import math
import struct
import sys
import unicodedata
import zlib

BLOCK = 4194304
ALIGN = 65536
MANIFEST = 'xpkg/manifest.json'
SIGS = 'xpkg/signatures.json'
PARTIAL = 'xpkg/partial.json'
MANIFEST_KEYS = {'format', 'name', 'version', 'sequence', 'description', 'license', 'task', 'expires', 'inputs',
                 'outputs', 'models', 'pipeline', 'assets', 'metadata', 'blockSize', 'files'}


# --- canonical JSON (FORMAT.md §5: RFC 8785) ---------------------------------------------------------------

def es_number(x):
    """A number as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if isinstance(x, bool):
        raise TypeError('bool')
    if isinstance(x, int):
        if abs(x) <= 2 ** 53:
            return str(x)
        x = float(x)  # a JSON number is a double
    if math.isnan(x) or math.isinf(x):
        raise ValueError('not finite')
    if x == 0:
        return '0'
    sign = '-' if x < 0 else ''
    r = repr(abs(x))  # shortest round-trip digits
    mant, _, exp = r.partition('e')
    e = int(exp) if exp else 0
    if '.' in mant:
        ip, fp = mant.split('.')
    else:
        ip, fp = mant, ''
    digits = (ip + fp).lstrip('0')
    lead = len(ip + fp) - len((ip + fp).lstrip('0'))
    n = len(ip) + e - lead  # decimal point position relative to `digits`
    digits = digits.rstrip('0') or '0'
    k = len(digits)
    if k <= n <= 21:
        s = digits + '0' * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + '.' + digits[n:]
    elif -6 < n <= 0:
        s = '0.' + '0' * (-n) + digits
    else:
        e2 = n - 1
        s = digits[0] + ('.' + digits[1:] if k > 1 else '') + 'e' + ('+' if e2 >= 0 else '-') + str(abs(e2))
    return sign + s


ESCAPES = {'"': '\\"', '\\': '\\\\', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t'}


def es_string(s):
    """A string as JSON.stringify writes it: the short escapes, \\u00xx for other controls, all else as is."""
    return '"' + ''.join(ESCAPES.get(ch) or ('\\u%04x' % ord(ch) if ord(ch) < 0x20 else ch) for ch in s) + '"'


def canonical(v):
    if v is None:
        return 'null'
    if v is True:
        return 'true'
    if v is False:
        return 'false'
    if isinstance(v, (int, float)):
        return es_number(v)
    if isinstance(v, str):
        return es_string(v)
    if isinstance(v, list):
        return '[' + ','.join(canonical(x) for x in v) + ']'
    if isinstance(v, dict):
        keys = sorted(v.keys(), key=lambda k: k.encode('utf-16-be'))  # UTF-16 code units
        return '{' + ','.join(es_string(k) + ':' + canonical(v[k]) for k in keys) + '}'
    raise TypeError(type(v))


def canonical_bytes(v):
    return canonical(v).encode('utf-8')


def strict_load(b):
    def no_dups(pairs):
        d = {}
        for k, val in pairs:
            if k in d:
                raise ValueError('duplicate key ' + k)
            d[k] = val
        return d
    return json.loads(b.decode('utf-8'), object_pairs_hook=no_dups)


# --- digests ------------------------------------------------------------------------------------------------

def record(path, data):
    blocks = [hashlib.sha256(data[i:i + BLOCK]).hexdigest() for i in range(0, len(data), BLOCK)]
    return {'path': path, 'size': len(data), 'sha256': hashlib.sha256(data).hexdigest(), 'blocks': blocks}


def utf8_key(p):
    return p.encode('utf-8')


# --- writer (FORMAT.md §2) ----------------------------------------------------------------------------------

def content(spec):
    if 'text' in spec:
        return spec['text'].encode('utf-8')
    if 'hex' in spec:
        return bytes.fromhex(spec['hex'])
    if 'zeros' in spec:
        return bytes(spec['zeros'])
    if 'pattern' in spec:
        n = spec['pattern']
        return (bytes(range(251)) * (n // 251 + 1))[:n]
    raise ValueError(spec)


def model_paths(m):
    return {f for model in m.get('models', []) for v in model['variants'] for f in v['files']}


def shim_size(plan, asset, model):
    """Zero bytes for `asset` (written right before `model`, both right after the manifest) that leave
    `model` 2 bytes short of alignment: only a shim on `asset` can align it (FORMAT.md §2.5)."""
    size = 0
    for _ in range(5):
        files = {p: content(s) for p, s in plan['files'].items()}
        files[asset] = bytes(size)
        m = dict(plan['manifest'], format='xpkg/1', blockSize=BLOCK,
                 files=[record(p, files[p]) for p in sorted(files, key=utf8_key)])
        head = 30 + len(MANIFEST) + len(canonical_bytes(m)) + 30 + len(asset.encode()) + 30 + len(model.encode())
        size = (ALIGN - 2 - head) % ALIGN
    return size


def write(plan, out):
    if plan.get('shim'):
        asset, model = plan['shim']
        plan = dict(plan, files=dict(plan['files'], **{asset: {'zeros': shim_size(plan, asset, model)}}),
                    order=[asset, model])
    files = {p: content(s) for p, s in plan['files'].items()}
    m = dict(plan['manifest'])
    m['format'] = 'xpkg/1'
    m['blockSize'] = BLOCK
    m['files'] = [record(p, files[p]) for p in sorted(files, key=utf8_key)]
    if plan.get('filesOrder') == 'utf16':  # a writer that sorted like its JSON keys: not conformant
        m['files'].sort(key=lambda f: f['path'].encode('utf-16-be'))
    mbytes = canonical_bytes(m)
    models = model_paths(m)
    order = plan.get('order') or sorted(files, key=utf8_key)
    deflate = set(plan.get('deflate', []))
    level = plan.get('level', 9)
    time, date = plan.get('dos', [0, (0 << 9) | (1 << 5) | 1])

    entries = [(MANIFEST, mbytes, bool(plan.get('deflateManifest')))] + [(p, files[p], p in deflate) for p in order]
    # Fix the data of each entry, then lay out: a non-empty model needs its data at a multiple of ALIGN,
    # reached by the smallest padding record >= 4 bytes; 1-3 bytes needs a 4-byte shim on the entry before.
    prepared = []
    for name, data, defl in entries:
        if defl:
            c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, plan.get('strategy', zlib.Z_DEFAULT_STRATEGY))
            stored = c.compress(data)
            if plan.get('syncFlush'):  # an empty stored block before the final one, as streaming writers do
                stored += c.flush(zlib.Z_SYNC_FLUSH)
            stored += c.flush()
        else:
            stored = data
        prepared.append({'name': name.encode('utf-8'), 'data': data, 'stored': stored, 'method': 8 if defl else 0,
                         'crc': zlib.crc32(data) & 0xffffffff, 'aligned': name in models and len(data) > 0,
                         'pad': 0})
    for e in prepared:
        if e['aligned'] and e['method'] != 0:
            raise ValueError('a model file must be stored')
    # offsets: iterate, adding shims where needed
    for _ in range(3):
        off = 0
        for i, e in enumerate(prepared):
            e['offset'] = off
            if e['aligned']:
                base = off + 30 + len(e['name'])
                need = (-base) % ALIGN
                if need == 0:
                    e['pad'] = 0
                elif need >= 4:
                    e['pad'] = need
                else:
                    prev = prepared[i - 1]
                    if prev['aligned'] or prev.get('shim'):
                        raise ValueError('needs a reorder (FORMAT.md §2.6)')
                    prev['shim'] = True
                    break
            off += 30 + len(e['name']) + e['pad'] + (4 if e.get('shim') else 0) + len(e['stored'])
        else:
            break
    out_b = bytearray()
    central = bytearray()
    for e in prepared:
        assert len(out_b) == e['offset']
        extra = b''
        if e['pad']:
            extra = struct.pack('<HH', 0x7078, e['pad'] - 4) + bytes(e['pad'] - 4)
        elif e.get('shim'):
            extra = struct.pack('<HH', 0x7078, 0)
        if len(e['stored']) >= 0xffffffff or e['offset'] >= 0xffffffff:
            raise ValueError('ZIP64 not implemented in this writer')
        out_b += struct.pack('<IHHHHHIIIHH', 0x04034b50, 20, 0x0800, e['method'], time, date, e['crc'],
                             len(e['stored']), len(e['data']), len(e['name']), len(extra))
        out_b += e['name'] + extra + e['stored']
        central += struct.pack('<IHHHHHHIIIHHHHHII', 0x02014b50, 0x032D, 20, 0x0800, e['method'], time, date,
                               e['crc'], len(e['stored']), len(e['data']), len(e['name']), 0, 0, 0, 0,
                               0o100644 << 16, e['offset'])
        central += e['name']
    cd_off = len(out_b)
    out_b += central
    out_b += struct.pack('<IHHHHIIH', 0x06054b50, 0, 0, len(prepared), len(prepared), len(central), cd_off, 0)
    with open(out, 'wb') as f:
        f.write(out_b)
    return hashlib.sha256(mbytes).hexdigest()


# --- checker (every MUST a reader can see in the bytes) -----------------------------------------------------

LAYOUT = []


def check(path):
    P = []
    with open(path, 'rb') as f:
        buf = f.read()
    eocd = len(buf) - 22
    sig, disk, cddisk, n1, n, cdsize, cdoff, clen = struct.unpack_from('<IHHHHIIH', buf, eocd)
    if sig != 0x06054b50 or clen != 0 or disk or cddisk or n1 != n:
        return None, ['end record: not a plain 22-byte end record at end of file']
    zip64 = n == 0xffff or cdsize == 0xffffffff or cdoff == 0xffffffff
    if zip64:
        lsig, _, z64off, _ = struct.unpack_from('<IIQI', buf, eocd - 20)
        if lsig != 0x07064b50:
            P.append('zip64 locator missing')
        z = struct.unpack_from('<IQHHIIQQQQ', buf, z64off)
        if z[0] != 0x06064b50 or z[1] != 44 or z[2] != 0x032D or z[3] != 45:
            P.append('zip64 end record fields')
        n, cdsize, cdoff = z[7], z[8], z[9]
        if z64off != cdoff + cdsize or z64off + 56 != eocd - 20:
            P.append('zip64 end records not contiguous')
    elif cdoff + cdsize != eocd:
        P.append('central directory does not end at the end record')
    pos = cdoff
    ents = []
    for _ in range(n):
        c = struct.unpack_from('<IHHHHHHIIIHHHHHII', buf, pos)
        (csig, made, need, flags, method, time, date, crc, csize, size, nlen, xlen, comlen, dstart, iattr,
         eattr, loff) = c
        name = buf[pos + 46:pos + 46 + nlen]
        cx = buf[pos + 46 + nlen:pos + 46 + nlen + xlen]
        pos += 46 + nlen + xlen + comlen
        if csig != 0x02014b50:
            P.append('central signature')
            break
        nm = name.decode('utf-8', 'replace')
        if made != 0x032D:
            P.append('%s: version made by %#x' % (nm, made))
        if flags != 0x0800:
            P.append('%s: flags %#x' % (nm, flags))
        if method not in (0, 8):
            P.append('%s: method %d' % (nm, method))
        if comlen or dstart or iattr:
            P.append('%s: comment/disk/internal attributes' % nm)
        if eattr != 0o100644 << 16:
            P.append('%s: external attributes %#x' % (nm, eattr))
        big = csize == 0xffffffff or size == 0xffffffff
        if (csize == 0xffffffff) != (size == 0xffffffff):
            P.append('%s: only one size field at max' % nm)
        if cx:
            hid, hlen = struct.unpack_from('<HH', cx, 0)
            if hid != 1 or 4 + hlen != len(cx):
                P.append('%s: central extra other than one ZIP64 record' % nm)
            vals = list(struct.unpack_from('<%dQ' % (hlen // 8), cx, 4))
            if big:
                size, csize = vals[0], vals[1]
                vals = vals[2:]
            if loff == 0xffffffff:
                loff = vals.pop(0)
            if vals:
                P.append('%s: central ZIP64 record carries more than needed' % nm)
            if need != 45:
                P.append('%s: central version needed %d with ZIP64' % (nm, need))
        else:
            if big or loff == 0xffffffff:
                P.append('%s: max field without ZIP64' % nm)
            if need != 20:
                P.append('%s: central version needed %d' % (nm, need))
        ents.append({'name': name, 'nm': nm, 'method': method, 'time': time, 'date': date, 'crc': crc,
                     'csize': csize, 'size': size, 'off': loff, 'big': big, 'flags': flags})
    if pos != cdoff + cdsize:
        P.append('central directory size mismatch')
    # local headers, contiguity
    cursor = 0
    for e in ents:
        if e['off'] != cursor:
            P.append('%s: local header at %d, expected %d (gap/overlap/order)' % (e['nm'], e['off'], cursor))
        l = struct.unpack_from('<IHHHHHIIIHH', buf, e['off'])
        lsig, lneed, lflags, lmethod, ltime, ldate, lcrc, lcsize, lsize, lnlen, lxlen = l
        lname = buf[e['off'] + 30:e['off'] + 30 + lnlen]
        lx = buf[e['off'] + 30 + lnlen:e['off'] + 30 + lnlen + lxlen]
        if lsig != 0x04034b50 or lname != e['name'] or lflags != e['flags'] or lmethod != e['method'] \
                or ltime != e['time'] or ldate != e['date'] or lcrc != e['crc']:
            P.append('%s: local header differs from central' % e['nm'])
        if lneed != (45 if e['big'] else 20):
            P.append('%s: local version needed %d' % (e['nm'], lneed))
        i = 0
        e['pad'] = None
        if e['big']:
            hid, hlen = struct.unpack_from('<HH', lx, 0)
            if hid != 1 or hlen != 16:
                P.append('%s: local ZIP64 record' % e['nm'])
            else:
                ls, lc = struct.unpack_from('<QQ', lx, 4)
                if (ls, lc) != (e['size'], e['csize']) or (lsize, lcsize) != (0xffffffff, 0xffffffff):
                    P.append('%s: local ZIP64 sizes differ' % e['nm'])
            i = 20
        elif (lsize, lcsize) != (e['size'], e['csize']):
            P.append('%s: local sizes differ' % e['nm'])
        if i < len(lx):
            hid, hlen = struct.unpack_from('<HH', lx, i)
            if hid != 0x7078 or i + 4 + hlen != len(lx) or any(lx[i + 4:]):
                P.append('%s: local extra other than a zero padding record' % e['nm'])
            e['pad'] = 4 + hlen
        e['data_off'] = e['off'] + 30 + lnlen + lxlen
        cursor = e['data_off'] + e['csize']
    if cursor != cdoff:
        P.append('central directory does not start where the last entry ends')
    if len({(e['time'], e['date']) for e in ents}) > 1:
        P.append('timestamps differ')
    names = [e['nm'] for e in ents]
    if len(set(names)) != len(names):
        P.append('duplicate names')
    if not ents or names[0] != MANIFEST:
        return None, P + ['manifest is not the first entry']
    if SIGS in names and names[-1] != SIGS:
        P.append('signatures not last')

    def data(e):
        raw = buf[e['data_off']:e['data_off'] + e['csize']]
        if e['method'] == 8:
            d = zlib.decompressobj(-15)
            out = d.decompress(raw, e['size'] + 1)
            if not d.eof or d.unused_data or d.unconsumed_tail or len(out) != e['size']:
                P.append('%s: deflate stream does not match its sizes' % e['nm'])
            raw = out
        elif e['csize'] != e['size']:
            P.append('%s: stored sizes differ' % e['nm'])
        if zlib.crc32(raw) & 0xffffffff != e['crc']:
            P.append('%s: CRC-32' % e['nm'])
        return raw

    LAYOUT[:] = [[e['nm'], e['method'], e['pad'] or 0] for e in ents]
    mbytes = data(ents[0])
    pid = hashlib.sha256(mbytes).hexdigest()
    try:
        m = strict_load(mbytes)
    except Exception as ex:  # noqa: BLE001 - report, do not crash
        return pid, P + ['manifest JSON: %s' % ex]
    if canonical_bytes(m) != mbytes:
        P.append('manifest is not canonical JSON')
    extra_keys = set(m) - MANIFEST_KEYS
    if extra_keys:
        P.append('manifest fields not in the schema: %s' % sorted(extra_keys))
    if m.get('format') != 'xpkg/1' or m.get('blockSize') != BLOCK:
        P.append('format/blockSize')
    files = m.get('files', [])
    paths = [f['path'] for f in files]
    if paths != sorted(paths, key=utf8_key) or len(set(paths)) != len(paths):
        P.append('files not sorted by path in UTF-8 byte order')
    for p in paths:
        if unicodedata.normalize('NFC', p) != p:
            P.append('%s: not NFC' % p)
    payload = [e for e in ents[1:] if e['nm'] not in (SIGS, PARTIAL)]
    if sorted(e['nm'] for e in payload) != sorted(paths):
        P.append('entries are not exactly the manifest files')
    models = model_paths(m)
    by = {e['nm']: e for e in ents}
    for i, e in enumerate(ents):
        aligned = e['nm'] in models and e['size'] > 0
        if aligned:
            if e['method'] != 0:
                P.append('%s: model not stored' % e['nm'])
            if e['data_off'] % ALIGN:
                P.append('%s: model data at %d, not 64 KiB aligned' % (e['nm'], e['data_off']))
            want = (-(e['off'] + 30 + len(e['name']) + (20 if e['big'] else 0))) % ALIGN
            if (e['pad'] or 0) != want:
                P.append('%s: padding %s, minimal is %d' % (e['nm'], e['pad'], want))
        elif e['pad'] is not None:
            nxt = ents[i + 1] if i + 1 < len(ents) else None
            shim_ok = e['pad'] == 4 and nxt is not None and nxt['nm'] in models and nxt['size'] > 0 \
                and 1 <= (-(nxt['off'] - 4 + 30 + len(nxt['name']) + (20 if nxt['big'] else 0))) % ALIGN <= 3
            if not shim_ok:
                P.append('%s: padding on an entry that needs none' % e['nm'])
    for f in files:
        e = by.get(f['path'])
        if not e:
            continue
        b = data(e)
        if record(f['path'], b) != f:
            P.append('%s: size/sha256/blocks differ from the manifest' % f['path'])
    if SIGS in by:
        e = by[SIGS]
        if e['method'] != 0:
            P.append('signatures deflated')
        sb = data(e)
        if len(sb) > 256 * 1024:
            P.append('signatures too large')
        try:
            env = strict_load(sb)
            if canonical_bytes(env) != sb:
                P.append('signatures not canonical')
            if set(env) != {'packageId', 'payloadType', 'signatures'}:
                P.append('envelope fields')
            if env.get('payloadType') != 'application/vnd.xpkg.manifest.v1+json':
                P.append('payloadType')
            if env.get('packageId') != pid:
                P.append('packageId is not the package id')
            sigs = env.get('signatures') or []
            if not 1 <= len(sigs) <= 64:
                P.append('signature count')
            ids = [s.get('keyid') for s in sigs]
            if ids != sorted(ids) or len(set(ids)) != len(ids):
                P.append('key ids not strictly increasing')
            for s in sigs:
                if set(s) != {'keyid', 'sig'} or len(s['keyid']) != 64 or s['keyid'] != s['keyid'].lower():
                    P.append('signature item shape')
                raw = base64.b64decode(s['sig'], validate=True)
                if len(s['sig']) != 88 or len(raw) != 64 or base64.b64encode(raw).decode() != s['sig']:
                    P.append('sig not canonical base64 of 64 bytes')
        except Exception as ex:  # noqa: BLE001
            P.append('signatures JSON: %s' % ex)
    return pid, P


def main():
    cmd = sys.argv[1]
    if cmd == 'write':
        with open(sys.argv[2], encoding='utf-8') as f:
            plan = json.load(f)
        print(json.dumps({'id': write(plan, sys.argv[3])}))
    elif cmd == 'check':
        pid, problems = check(sys.argv[2])
        print(json.dumps({'id': pid, 'problems': problems, 'layout': LAYOUT}, ensure_ascii=False))
    elif cmd == 'canonical':
        sys.stdout.write(canonical(json.loads(sys.stdin.read())))
    else:
        raise SystemExit('usage: write <plan> <out> | check <pkg> | canonical')


if __name__ == '__main__':
    main()
