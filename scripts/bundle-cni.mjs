// Bundles the meshd-cni plugin (src/cni/plugin-main.ts and what it imports,
// zod included) into one CommonJS file, dist/cni/meshd-cni.cjs. A container
// runtime starts one plugin process per ADD/DEL: loading one file, with the
// V8 code cache bin/meshd-cni.mjs keeps next to it, starts several times
// faster than resolving and compiling the ES module graph. Runs after
// `npm run build` (postbuild) and from setup.
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
await build({
  absWorkingDir: root,
  entryPoints: ['src/cni/plugin-main.ts'],
  outfile: 'dist/cni/meshd-cni.cjs',
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  minify: true,
  logLevel: 'warning',
});
// V8 validates a code cache by the source's length, not its content: never
// let a cache made for the previous bundle meet the new one.
rmSync(new URL('../dist/cni/meshd-cni.cjs.cache', import.meta.url), { force: true });
