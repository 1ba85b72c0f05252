#!/usr/bin/env node
// Entry point of the `meshd-cni` CNI plugin; the code is built into dist/ by `npm run setup`.
// A container runtime runs this once per ADD/DEL/CHECK/…: keep it to one import.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/src/cni/plugin-main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  process.stdout.write(
    `${JSON.stringify({ cniVersion: '1.1.0', code: 5, msg: 'meshd-cni is not built yet; run "npm run setup" in the meshd checkout', details: 'MESHD_CNI_NOT_BUILT' })}\n`,
  );
  process.exit(1);
}
const { main } = await import(entry.href);
process.exitCode = await main();
