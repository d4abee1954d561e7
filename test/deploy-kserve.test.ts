/**
 * deploy/kserve/: the ServingRuntime and InferenceService validate against KServe's CRD schemas
 * (extracts vendored in deploy/kserve/schema/, strict about unknown fields), agree with each other and
 * with the image (deploy/image/build.sh), and the runtime's container args start a real `xpkg serve`
 * that answers the manifest's own readiness and liveness probes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { xpkg } from './helpers/cli.js';
import { freePort } from './helpers/registry.js';
import { tempDir } from './helpers/source.js';

// biome-ignore lint/suspicious/noExplicitAny: parsed YAML, walked along the manifests' known shape
type Doc = Record<string, any>;
const load = (p: string): Doc[] =>
  parseAllDocuments(readFileSync(p, 'utf8')).map((d) => {
    if (d.errors.length) throw d.errors[0];
    return d.toJS() as Doc;
  });
const [runtime] = load('deploy/kserve/servingruntime.yaml');
const [isvc] = load('deploy/kserve/inferenceservice.yaml');
const container = runtime.spec.containers.find((c: Doc) => c.name === 'kserve-container');

/**
 * A CRD's openAPIV3Schema made strict: properties it does not declare are errors (the API server
 * prunes them silently; `kubectl --validate=strict` refuses them), except where the CRD keeps
 * unknown fields.
 */
function strict(schema: Doc): Doc {
  if (Array.isArray(schema)) return schema.map(strict);
  if (!schema || typeof schema !== 'object') return schema;
  const out: Doc = Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, strict(v)]));
  if (out.properties && out.additionalProperties === undefined && !out['x-kubernetes-preserve-unknown-fields'])
    out.additionalProperties = false;
  return out;
}

function validator(file: string): { kind: string; apiVersion: string; validate: ValidateFunction } {
  const crd = JSON.parse(readFileSync(file, 'utf8'));
  const ajv = new Ajv({ allErrors: true, strict: false });
  // Kubernetes' integer formats, checked (ajv knows neither).
  const range = (bits: number) => (n: number) => Number.isInteger(n) && Math.abs(n) <= 2 ** (bits - 1);
  ajv.addFormat('int32', { type: 'number', validate: range(32) });
  ajv.addFormat('int64', { type: 'number', validate: range(64) });
  return {
    kind: crd.kind,
    apiVersion: `${crd.group}/${crd.version}`,
    validate: ajv.compile(strict(crd.openAPIV3Schema)),
  };
}
const srSchema = validator('deploy/kserve/schema/servingruntime.v1alpha1.json');
const isvcSchema = validator('deploy/kserve/schema/inferenceservice.v1beta1.json');

const clone = (d: Doc): Doc => structuredClone(d);
const errors = (v: ValidateFunction, d: Doc) => (v(d) ? [] : v.errors!.map((e) => `${e.instancePath} ${e.message}`));

describe('deploy/kserve manifests against the KServe CRD schemas', () => {
  it('the ServingRuntime and the InferenceService validate, with the kinds and API versions of their CRDs', () => {
    expect([runtime.apiVersion, runtime.kind]).toEqual([srSchema.apiVersion, srSchema.kind]);
    expect([isvc.apiVersion, isvc.kind]).toEqual([isvcSchema.apiVersion, isvcSchema.kind]);
    expect(errors(srSchema.validate, runtime)).toEqual([]);
    expect(errors(isvcSchema.validate, isvc)).toEqual([]);
  });

  it('refuses a misspelt field, a wrong type and a missing required field', () => {
    const typo = clone(runtime);
    typo.spec.containers[0].readinesProbe = typo.spec.containers[0].readinessProbe;
    expect(errors(srSchema.validate, typo).join()).toMatch(/additional properties/);
    const badPort = clone(runtime);
    badPort.spec.containers[0].ports[0].containerPort = '8080';
    expect(errors(srSchema.validate, badPort).join()).toMatch(/containerPort must be integer/);
    const bigPort = clone(runtime);
    bigPort.spec.containers[0].ports[0].containerPort = 2 ** 40;
    expect(errors(srSchema.validate, bigPort).join()).toMatch(/int32/);
    const noFormat = clone(isvc);
    delete noFormat.spec.predictor.model.modelFormat.name;
    expect(errors(isvcSchema.validate, noFormat).join()).toMatch(/must have required property 'name'/);
    const noPredictor = clone(isvc);
    delete noPredictor.spec.predictor;
    expect(errors(isvcSchema.validate, noPredictor).join()).toMatch(/'predictor'/);
  });

  it('the InferenceService selects this runtime: its model format, runtime name and protocol', () => {
    const model = isvc.spec.predictor.model;
    expect(runtime.spec.supportedModelFormats.map((f: Doc) => f.name)).toContain(model.modelFormat.name);
    expect(model.runtime).toBe(runtime.metadata.name);
    expect(runtime.spec.protocolVersions).toContain(model.protocolVersion);
    expect(model.storageUri).toMatch(/\/$/); // a folder of .xpkg files: the repository
  });

  it('the container matches the image: port, probes on the V2 health endpoints, non-root, read-only root', () => {
    const arg = (flag: string) => container.args[container.args.indexOf(flag) + 1];
    const port = Number(arg('--port'));
    expect(container.ports.map((p: Doc) => p.containerPort)).toEqual([port]);
    expect(container.readinessProbe.httpGet).toMatchObject({ path: '/v2/health/ready', port });
    expect(container.livenessProbe.httpGet).toMatchObject({ path: '/v2/health/live', port });
    expect(arg('--repo')).toBe('/mnt/models'); // where KServe's storage initializer puts storageUri
    const build = readFileSync('deploy/image/build.sh', 'utf8');
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      readOnlyRootFilesystem: true,
      allowPrivilegeEscalation: false,
      runAsUser: Number(/^APP_UID=(\d+)$/m.exec(build)![1]),
    });
    // Every path the server writes is on a mounted volume, not the read-only root.
    const mounts = container.volumeMounts.map((m: Doc) => m.mountPath);
    for (const e of container.env) expect(mounts.some((m: string) => e.value.startsWith(`${m}/`))).toBe(true);
    const trust = container.volumeMounts.find((m: Doc) => m.mountPath === arg('--trust-dir'));
    expect(trust.readOnly).toBe(true);
    expect(runtime.spec.volumes.find((v: Doc) => v.name === trust.name).secret.secretName).toBeTruthy();
  });

  it('the container args are real `xpkg serve` flags', () => {
    const help = xpkg(['serve', '--help']);
    expect(help.status).toBe(0);
    const flags = new Set([...help.stdout.matchAll(/^\s+(--[a-z][a-z-]*)/gm)].map((m) => m[1]));
    expect(flags.size).toBeGreaterThan(10);
    const used = container.args.filter((a: string) => a.startsWith('--'));
    expect(used.length).toBeGreaterThan(3);
    expect(used.filter((f: string) => !flags.has(f))).toEqual([]);
  });

  it('the runtime args and env start `xpkg serve`, which answers the manifest probes and an infer request', async () => {
    // The pod's paths and address mapped onto temp folders and a free loopback port.
    const repo = tempDir('xpkg-kserve-models-');
    const trust = tempDir('xpkg-kserve-trust-');
    const tmp = tempDir('xpkg-kserve-tmp-');
    copyFileSync('fixtures/dist/multi-variant.xpkg', join(repo, 'multi-variant.xpkg'));
    copyFileSync('fixtures/keys/test.pub', join(trust, 'publisher.pub'));
    const port = await freePort();
    const containerPort = String(container.ports[0].containerPort);
    const local = (v: string) =>
      v === '/mnt/models'
        ? repo
        : v === '/etc/xpkg/trust'
          ? trust
          : v === '0.0.0.0'
            ? '127.0.0.1'
            : v === containerPort
              ? String(port)
              : v.replace(/^\/tmp\//, `${tmp}/`);
    const args: string[] = container.args.map(local);
    const env = Object.fromEntries(container.env.map((e: Doc) => [e.name, local(e.value)]));
    const child: ChildProcess = spawn(process.execPath, [resolve('bin/xpkg.js'), 'serve', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let log = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (log += s));
    const get = (path: string) =>
      fetch(`http://127.0.0.1:${port}${path}`)
        .then((r) => r.status)
        .catch(() => 0);
    try {
      const t0 = Date.now();
      while ((await get(container.readinessProbe.httpGet.path)) !== 200) {
        if (Date.now() - t0 > 45_000 || child.exitCode !== null) throw new Error(`not ready:\n${log}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await get(container.livenessProbe.httpGet.path)).toBe(200);
      const r = await fetch(`http://127.0.0.1:${port}/v2/models/multi-variant-add-one/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'x', datatype: 'FP32', shape: [2], data: [1, 2.5] }] }),
      });
      expect((await r.json()).outputs[0].data).toEqual([2, 3.5]);
      // --log-format json from the manifest: the server's lines are JSON objects. The logger writes
      // asynchronously, so its "ready" line may reach this pipe after the probe's answer did.
      const msgs = () =>
        log
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l).msg);
      for (const t1 = Date.now(); !msgs().includes('ready') && Date.now() - t1 < 5000; )
        await new Promise((r) => setTimeout(r, 50));
      expect(msgs(), log).toContain('ready');
    } finally {
      child.kill('SIGTERM');
      if (child.exitCode === null) await once(child, 'exit');
    }
    expect(child.exitCode).toBe(0);
  });
});
