/**
 * The repository API (Triton's model_repository extension): off unless enabled; on loopback or with a
 * bearer token; loads and unloads models from the folder, signed packages only, never a named file.
 */
import { copyFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dropIn, http, idOf, postJson, testServer, versionedPackage } from './helpers/serve.js';
import { tempDir } from './helpers/source.js';

const NAME = 'multi-variant-add-one';
let v2: string;

beforeAll(async () => {
  v2 = await versionedPackage({ sequence: 2, k: 2 });
});

describe('repository API', () => {
  it('off by default; on loopback: index, unload, load; only signed packages load through it', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile(v2, join(repo, 'adder.xpkg'));
    const unsigned = await versionedPackage({ sequence: 1, k: 5, signed: false, name: 'unsigned-adder' });
    await copyFile(unsigned, join(repo, 'unsigned.xpkg'));
    const off = await testServer({ repo });
    try {
      expect((await postJson(`${off.url}/v2/repository/index`, {})).body.code).toBe('E_SERVE_NOT_FOUND');
    } finally {
      await off.close();
    }
    const s = await testServer({
      repo,
      repositoryApi: true,
      runner: { trust: ['fixtures/keys/test.pub'], allowUnsigned: true, stateDir: tempDir() },
    });
    try {
      expect((await http(`${s.url}/v2`)).body.extensions).toContain('model_repository');
      const index = await postJson(`${s.url}/v2/repository/index`, {});
      expect(index.body.map((x: { name: string; state: string }) => [x.name, x.state]).sort()).toEqual([
        [NAME, 'READY'],
        ['unsigned-adder', 'READY'],
      ]);
      expect((await postJson(`${s.url}/v2/repository/models/${NAME}/unload`, {})).status).toBe(200);
      expect((await http(`${s.url}/v2/models/${NAME}/ready`)).status).toBe(400);
      const loaded = await postJson(`${s.url}/v2/repository/models/${NAME}/load`, {});
      expect([loaded.status, loaded.body.version]).toEqual([200, await idOf(v2)]);
      expect((await http(`${s.url}/v2/models/${NAME}/ready`)).status).toBe(200);
      // an unsigned package of the same sequence (no signer state to roll back): refused by the daemon itself
      const rival = await versionedPackage({ sequence: 1, k: 6, signed: false, name: 'unsigned-adder' });
      const rollback = new Promise<{ reason: { code: string } }>((r) => s.repository.once('refused', r));
      await dropIn(rival, repo, 'rival.xpkg');
      expect((await rollback).reason.code).toBe('E_SERVE_ROLLBACK');
      // the operator allowed unsigned packages in the folder, but the API loads signed ones only
      await postJson(`${s.url}/v2/repository/models/unsigned-adder/unload`, {});
      const refused = await postJson(`${s.url}/v2/repository/models/unsigned-adder/load`, {});
      expect([refused.status, refused.body.code]).toEqual([403, 'E_SERVE_UNSIGNED']);
      // no way to name a file or a URL
      const url = await postJson(`${s.url}/v2/repository/models/${NAME}/load`, {
        parameters: { file: 'http://example.invalid/x.xpkg' },
      });
      expect([url.status, url.body.code]).toEqual([400, 'E_SERVE_REQUEST']);
    } finally {
      await s.close();
    }
  });

  it('with a token: refused without it; without a token it cannot listen beyond loopback', async () => {
    const repo = tempDir('xpkg-serve-repo-');
    await copyFile(v2, join(repo, 'adder.xpkg'));
    const s = await testServer({ repo, repositoryApi: true, repositoryToken: 's3cret' });
    try {
      const no = await postJson(`${s.url}/v2/repository/index`, {});
      expect([no.status, no.body.code]).toEqual([401, 'E_SERVE_UNAUTHORIZED']);
      const yes = await postJson(`${s.url}/v2/repository/index`, {}, { authorization: 'Bearer s3cret' });
      expect(yes.status).toBe(200);
    } finally {
      await s.close();
    }
    await expect(testServer({ repo, host: '0.0.0.0', repositoryApi: true })).rejects.toMatchObject({
      code: 'E_SERVE_CONFIG',
    });
    await rename(join(repo, 'adder.xpkg'), join(repo, 'adder2.xpkg'));
  });
});
