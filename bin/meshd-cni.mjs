#!/usr/bin/env node
// Entry point of the `meshd-cni` CNI plugin. A container runtime runs this
// once per ADD/DEL/CHECK/…, so start-up time is pod start-up time: it loads
// the single-file bundle dist/cni/meshd-cni.cjs (scripts/bundle-cni.mjs)
// through node:vm with a V8 code cache kept beside it (written on first use,
// rewritten when V8 rejects it), and falls back to the ES modules under
// dist/src/cni when the bundle is missing or older than them.
import { existsSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Script } from 'node:vm';

const bundle = fileURLToPath(new URL('../dist/cni/meshd-cni.cjs', import.meta.url));
const esm = new URL('../dist/src/cni/plugin-main.js', import.meta.url);

function mtime(path) {
  try {
    return statSync(path).mtimeMs;
  } catch {
    // A file that cannot be read counts as older than anything: the caller then rebuilds or falls back.
    return -1;
  }
}

async function runBundle() {
  const cachePath = `${bundle}.cache`;
  let cachedData;
  // V8 checks a cache against the source's length only: a cache older than
  // the bundle is not trusted.
  if (mtime(cachePath) >= mtime(bundle)) {
    try {
      cachedData = readFileSync(cachePath);
    } catch {
      // A cache that vanished between the two calls is only a slower start.
      cachedData = undefined;
    }
  }
  const source = `(function (exports, require, module, __filename, __dirname) {${readFileSync(bundle, 'utf8')}\n})`;
  const script = new Script(source, { filename: bundle, cachedData });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
  const code = await mod.exports.main();
  if (cachedData === undefined || script.cachedDataRejected) {
    // After the run, so the functions it compiled are in the cache too.
    try {
      const tmp = `${cachePath}.${process.pid}`;
      writeFileSync(tmp, script.createCachedData());
      renameSync(tmp, cachePath);
    } catch {
      // read-only checkout: run without a cache
    }
  }
  return code;
}

/** Newest compiled module the bundle is made of (tsc rewrites only what changed). */
function newestModule() {
  let newest = -1;
  for (const dir of ['../dist/src/cni/', '../dist/src/util/']) {
    const path = fileURLToPath(new URL(dir, import.meta.url));
    let names = [];
    try {
      names = readdirSync(path);
    } catch {
      // A directory that is not there holds nothing newer.
      continue;
    }
    for (const n of names) if (n.endsWith('.js') && !n.endsWith('.test.js')) newest = Math.max(newest, mtime(path + n));
  }
  return newest;
}

const esmPath = fileURLToPath(esm);
if (existsSync(bundle) && mtime(bundle) >= newestModule()) {
  process.exitCode = await runBundle();
} else if (existsSync(esmPath)) {
  const { main } = await import(esm.href);
  process.exitCode = await main();
} else {
  process.stdout.write(
    `${JSON.stringify({ cniVersion: '1.1.0', code: 5, msg: 'meshd-cni is not built yet; run "npm run setup" in the meshd checkout', details: 'MESHD_CNI_NOT_BUILT' })}\n`,
  );
  process.exitCode = 1;
}
