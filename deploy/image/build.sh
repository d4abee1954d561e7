#!/usr/bin/env bash
# Builds the OCI image of `xpkg serve` from Debian packages only (issue 16):
#   layer 1  a `debootstrap --variant=minbase` root of Debian $SUITE with Debian's nodejs, trimmed
#            (no apt lists/caches, docs, man pages, locales) plus the service user (uid 65532);
#   layer 2  /opt/xpkg: this checkout's built dist/, the production node_modules (onnxruntime-node's
#            linux-x64 library, sharp's prebuilt libvips) and the native addon built here.
# assembled with umoci, then unpacked as a runtime bundle (for the chroot check) and optionally pushed
# with skopeo. Nothing is downloaded when the container runs.
#
# Usage: npm run image [-- --push HOST:PORT/REPO[:TAG]] [--fresh]
#   env  XPKG_IMAGE_SUITE (trixie)  XPKG_IMAGE_MIRROR (http://deb.debian.org/debian)
#        XPKG_IMAGE_WORK (.image)   XPKG_IMAGE_TAG (package version)  SOURCE_DATE_EPOCH (last commit)
# Output: $WORK/oci (OCI layout, tag $TAG), $WORK/bundle (umoci unpack), $WORK/image.json (sizes).
# Needs root (debootstrap, file ownership); installs debootstrap/umoci/skopeo from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
SUITE=${XPKG_IMAGE_SUITE:-trixie}
MIRROR=${XPKG_IMAGE_MIRROR:-http://deb.debian.org/debian}
WORK=${XPKG_IMAGE_WORK:-$ROOT/.image}
TAG=${XPKG_IMAGE_TAG:-$(node -p "require('./package.json').version")}
APP_UID=65532
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
CREATED=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
PUSH=""
FRESH=0
while [ $# -gt 0 ]; do
  case "$1" in
    --push) PUSH=$2; shift 2 ;;
    --fresh) FRESH=1; shift ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "image: $*" >&2; }
t0=$(date +%s)

[ "$(id -u)" = 0 ] || { echo "build.sh: run as root (debootstrap and file ownership need it)" >&2; exit 1; }
missing=()
for tool in debootstrap umoci skopeo; do command -v $tool >/dev/null 2>&1 || missing+=($tool); done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -f dist/cli/main.js ] || { echo "build.sh: dist/ is missing: npm run build first" >&2; exit 1; }
[ -f native/build/Release/xpkg_native.node ] || log "native addon not built: the image uses the portable kernels"
mkdir -p "$WORK"

# --- layer 1: the Debian root (cached between builds; --fresh redoes it) ---
BASE=$WORK/base-$SUITE
if [ "$FRESH" = 1 ] || [ ! -f "$BASE.debootstrapped" ]; then
  rm -rf "$BASE" "$BASE.debootstrapped" "$BASE.trimmed"
  log "debootstrap $SUITE (minbase + nodejs) from $MIRROR"
  debootstrap --variant=minbase --include=nodejs "$SUITE" "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
  touch "$BASE.debootstrapped"
fi
if [ ! -f "$BASE.trimmed" ]; then
  # What a server never reads: package lists and caches, docs, man/info pages, translations, logs.
  rm -rf "$BASE"/var/lib/apt/lists/* "$BASE"/var/cache/apt/* "$BASE"/var/cache/debconf/*-old \
    "$BASE"/usr/share/man/* "$BASE"/usr/share/info/* "$BASE"/usr/share/lintian \
    "$BASE"/usr/share/locale/* "$BASE"/var/log/* "$BASE"/var/lib/dpkg/*-old "$BASE"/var/cache/ldconfig/aux-cache
  # Docs go too, but not the copyright files: the licences of what the image ships.
  find "$BASE/usr/share/doc" ! -type d ! -name copyright -delete
  find "$BASE/usr/share/doc" -mindepth 1 -type d -empty -delete
  # The service user: a fixed uid so Kubernetes' runAsNonRoot can check it without a name lookup.
  echo "xpkg:x:$APP_UID:$APP_UID:xpkg serve:/nonexistent:/usr/sbin/nologin" >>"$BASE/etc/passwd"
  echo "xpkg:x:$APP_UID:" >>"$BASE/etc/group"
  echo "xpkg:!:19000::::::" >>"$BASE/etc/shadow"
  # Mount points: the model repository (KServe's storage initializer fills /mnt/models) and the trust keys.
  mkdir -p "$BASE/mnt/models" "$BASE/etc/xpkg/trust"
  chmod 1777 "$BASE/tmp"
  touch "$BASE.trimmed"
fi
node_version=$(chroot "$BASE" /usr/bin/node --version)
log "Debian $SUITE nodejs $node_version"

# --- layer 2: the application ---
APP=$WORK/app
rm -rf "$APP" && mkdir -p "$APP/opt/xpkg"
cp package.json "$APP/opt/xpkg/"
mkdir -p "$APP/opt/xpkg/bin" && cp bin/xpkg.js "$APP/opt/xpkg/bin/"
# The library, CLI and server; the browser bundle is for `xpkg web` only and stays out.
tar -C . --exclude=dist/browser --exclude=dist/browser-types --exclude='*.d.ts' --exclude='*.map' -cf - dist \
  | tar -C "$APP/opt/xpkg" -xf -
if [ -f native/build/Release/xpkg_native.node ]; then
  mkdir -p "$APP/opt/xpkg/native/build/Release"
  cp native/build/Release/xpkg_native.node "$APP/opt/xpkg/native/build/Release/"
fi
# Production dependencies exactly as npm resolved them here (what `npm ci --omit=dev` would install,
# without a second download): npm lists their folders.
mapfile -t deps < <(npm ls --omit=dev --all --parseable 2>/dev/null | sed -n "s|^$ROOT/||p" | grep '^node_modules/' | sort -u)
[ ${#deps[@]} -gt 0 ] || { echo "build.sh: npm ls found no production dependencies (npm ci first)" >&2; exit 1; }
tar -C . -cf - "${deps[@]}" | tar -C "$APP/opt/xpkg" -xf -
NM=$APP/opt/xpkg/node_modules
# onnxruntime-node ships every platform's library; this image runs linux-x64 only.
find "$NM/onnxruntime-node/bin/napi-v6" -mindepth 1 -maxdepth 1 ! -name linux -exec rm -rf {} +
find "$NM/onnxruntime-node/bin/napi-v6/linux" -mindepth 1 -maxdepth 1 ! -name x64 -exec rm -rf {} +
find "$NM" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \
  -o -name '*.markdown' \) -type f ! -iname 'LICENSE*' -delete
chmod -R a+rX,go-w "$APP/opt"

# Fixed timestamps: the layers' tar headers then depend on the contents only.
find "$BASE" "$APP" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

# --- assemble ---
# ORT_DISABLE_TELEMETRY: onnxruntime-node (1.29, Linux) otherwise starts a telemetry system that writes
# a device id under $HOME/.cache/Microsoft and tries HTTPS uploads; a server image wants neither.
OCI=$WORK/oci
rm -rf "$OCI"
umoci init --layout "$OCI"
umoci new --image "$OCI:$TAG"
hist=(--history.created "$CREATED" --history.author xpkg)
umoci insert --image "$OCI:$TAG" "${hist[@]}" --history.created_by "debootstrap --variant=minbase --include=nodejs $SUITE" \
  "$BASE" /
umoci insert --image "$OCI:$TAG" "${hist[@]}" --history.created_by "xpkg $TAG (dist, production node_modules, native addon)" \
  "$APP/opt/xpkg" /opt/xpkg
umoci config --image "$OCI:$TAG" --no-history --created "$CREATED" --author xpkg --os linux --architecture amd64 \
  --clear config.env --clear config.entrypoint --clear config.cmd \
  --config.user "$APP_UID:$APP_UID" --config.workingdir /opt/xpkg \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env NODE_ENV=production --config.env HOME=/tmp \
  --config.env XPKG_CACHE=/tmp/xpkg/cache --config.env XPKG_STATE_DIR=/tmp/xpkg/state \
  --config.env ORT_DISABLE_TELEMETRY=1 \
  --config.entrypoint /usr/bin/node --config.entrypoint /opt/xpkg/bin/xpkg.js --config.entrypoint serve \
  --config.cmd --repo --config.cmd /mnt/models --config.cmd --host --config.cmd 0.0.0.0 \
  --config.cmd --port --config.cmd 8080 --config.cmd --trust-dir --config.cmd /etc/xpkg/trust \
  --config.cmd --worker-nice --config.cmd 10 \
  --config.exposedports 8080/tcp --config.volume /mnt/models \
  --config.label "org.opencontainers.image.title=xpkg serve" \
  --config.label "org.opencontainers.image.version=$TAG" \
  --config.label "org.opencontainers.image.licenses=Apache-2.0" \
  --config.label "org.opencontainers.image.base.name=debian:$SUITE (debootstrap minbase)" \
  --config.label "io.xpkg.nodejs=$node_version"
umoci gc --layout "$OCI"

# --- unpack as a runtime bundle: what a runtime (or the chroot check) runs ---
rm -rf "$WORK/bundle"
umoci unpack --image "$OCI:$TAG" "$WORK/bundle" >/dev/null

# --- sizes ---
node --input-type=module - "$OCI" "$TAG" "$WORK/bundle" "$SUITE" "$node_version" "$WORK/image.json" <<'EOF'
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
const [oci, tag, bundle, suite, nodeVersion, out] = process.argv.slice(2);
const blob = (d) => JSON.parse(readFileSync(`${oci}/blobs/${d.replace(':', '/')}`, 'utf8'));
const index = JSON.parse(readFileSync(`${oci}/index.json`, 'utf8'));
const ref = index.manifests.find((m) => m.annotations?.['org.opencontainers.image.ref.name'] === tag);
const manifest = blob(ref.digest);
const layers = manifest.layers.map((l) => l.size);
const compressed = layers.reduce((a, b) => a + b, 0) + manifest.config.size + ref.size;
const unpacked = Number(execFileSync('du', ['-sb', `${bundle}/rootfs`], { encoding: 'utf8' }).split('\t')[0]);
const app = Number(execFileSync('du', ['-sb', `${bundle}/rootfs/opt/xpkg`], { encoding: 'utf8' }).split('\t')[0]);
const r = { tag, digest: ref.digest, suite, nodeVersion, compressedBytes: compressed, layerBytes: layers, unpackedBytes: unpacked, appUnpackedBytes: app };
writeFileSync(out, `${JSON.stringify(r, null, 2)}\n`);
const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;
console.error(`image: ${ref.digest}  compressed ${mb(compressed)} (layers ${layers.map(mb).join(' + ')}), unpacked ${mb(unpacked)} (app ${mb(app)})`);
EOF

if [ -n "$PUSH" ]; then
  log "pushing to docker://$PUSH"
  skopeo copy --quiet --dest-tls-verify=false "oci:$OCI:$TAG" "docker://$PUSH"
fi
log "done in $(($(date +%s) - t0)) s: $OCI:$TAG"
