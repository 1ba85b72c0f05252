#!/usr/bin/env node
// Writes install/crds/*.yaml from the policy schemas (src/k8s/crds.ts, built
// into dist/ by tsc). `--check` writes nothing and exits 1 when a file is
// out of date. src/k8s/crds.test.ts runs the same comparison.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { policyCrds, renderCrdYaml, renderCrdsYaml, crdFileName } = await import(join(root, 'dist', 'src', 'k8s', 'crds.js'));
const { identityCrds, IDENTITY_CRDS_FILE, IDENTITY_CRDS_HEADER } = await import(join(root, 'dist', 'src', 'identity', 'identity-crds.js'));
const { nodeCrds, NODE_CRDS_FILE, NODE_CRDS_HEADER } = await import(join(root, 'dist', 'src', 'k8s', 'meshd-node.js'));
const { meshdEndpointCrd, MEP_CRD_FILE, MEP_CRD_HEADER } = await import(join(root, 'dist', 'src', 'k8s', 'meshd-endpoint.js'));
const { lbIpamCrds, LB_IPAM_CRDS_FILE, LB_IPAM_CRDS_HEADER } = await import(join(root, 'dist', 'src', 'lbipam', 'crds.js'));
const check = process.argv.includes('--check');
let stale = 0;
const files = [
  ...policyCrds().map((crd) => [crdFileName(crd), renderCrdYaml(crd)]),
  [IDENTITY_CRDS_FILE, renderCrdsYaml(IDENTITY_CRDS_HEADER, identityCrds())],
  [NODE_CRDS_FILE, renderCrdsYaml(NODE_CRDS_HEADER, nodeCrds())],
  [MEP_CRD_FILE, renderCrdsYaml(MEP_CRD_HEADER, [meshdEndpointCrd()])],
  [LB_IPAM_CRDS_FILE, renderCrdsYaml(LB_IPAM_CRDS_HEADER, lbIpamCrds())],
];
for (const [name, text] of files) {
  const file = join(root, 'install', 'crds', name);
  let have = '';
  try {
    have = readFileSync(file, 'utf8');
  } catch {
    // A missing file is simply out of date.
  }
  if (have === text) continue;
  stale++;
  if (check) console.error(`out of date: install/crds/${name} (run node scripts/gen-crds.mjs)`);
  else {
    writeFileSync(file, text);
    console.log(`wrote install/crds/${name}`);
  }
}
process.exit(check && stale > 0 ? 1 : 0);
