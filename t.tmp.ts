import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { loadHostProfile } from './runner/host-profile.js';
import { Runner } from './runner/runner.js';
import { gpuVariantsOnCpu } from './test/helpers/gpu-on-cpu.js';
const H100 = loadHostProfile('fixtures/hosts/h100.json');
const pkg = process.argv[2]; const file = process.argv[3];
const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
const image = { data, width: info.width, height: info.height, channels: 3 };
const r = await Runner.open(pkg, { trust: ['fixtures/keys/test.pub'], threads: 2, host: H100, registry: gpuVariantsOnCpu().registry } as never);
for (let i = 0; i < Number(process.env.N ?? 6); i++) { const res = await r.run({ image }); if (i >= 3) console.log(JSON.stringify(Object.fromEntries(Object.entries(res.timings).map(([k, v]) => [k, Math.round((v as number) * 100) / 100])))); }
await r.close();
