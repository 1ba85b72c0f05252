/**
 * `meshd lb`: what the socket LB holds, read from the pinned maps (works
 * whether or not an agent is running; needs root).
 *
 *   meshd lb list [--pin-dir /sys/fs/bpf/meshd] [-o json]
 */
import { join } from 'node:path';
import { z } from 'zod';
import { BpfMap } from '../../native/index.js';
import { LB_F_AFFINITY, LB_F_MAGLEV, LbMapName, Scope } from '../datapath/lb/lb-maps.js';
import { LbReconciler, type FrontendInfo } from '../datapath/lb/lb-reconciler.js';
import { DEFAULT_PIN_DIR } from '../datapath/lb/sock-lb.js';

const Args = z.object({
  sub: z.literal('list', { message: 'usage: meshd lb list [--pin-dir DIR] [-o json]' }),
  pinDir: z.string().min(1),
  output: z.enum(['text', 'json']),
});

function parse(args: string[]) {
  const opt = (name: string): string | undefined => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  return Args.safeParse({ sub: args[0], pinDir: opt('--pin-dir') ?? DEFAULT_PIN_DIR, output: opt('-o') ?? 'text' });
}

const scopeName = (s: number): string => Object.entries(Scope).find(([, v]) => v === s)?.[0] ?? String(s);

export function readFrontends(pinDir: string): FrontendInfo[] {
  const open = (name: string) => BpfMap.fromPin(join(pinDir, name));
  const maps = { svc: open(LbMapName.svc), backends: open(LbMapName.backends), maglev: open(LbMapName.maglev), affmatch: open(LbMapName.affmatch) };
  try {
    const rec = new LbReconciler(maps);
    rec.restore();
    return rec.list().sort((a, b) => (a.vip === b.vip ? a.port - b.port : a.vip < b.vip ? -1 : 1));
  } finally {
    for (const m of Object.values(maps)) m.close();
  }
}

export async function runLb(args: string[]): Promise<number> {
  const r = parse(args);
  if (!r.success) {
    for (const i of r.error.issues) process.stderr.write(`meshd lb: ${i.path.join('.') || 'args'}: ${i.message}\n`);
    return 2;
  }
  let list: FrontendInfo[];
  try {
    list = readFrontends(r.data.pinDir);
  } catch (e) {
    process.stderr.write(`meshd lb: cannot read the socket-LB maps under ${r.data.pinDir}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  if (r.data.output === 'json') {
    process.stdout.write(`${JSON.stringify({ frontends: list })}\n`);
    return 0;
  }
  for (const f of list) {
    const flags = [f.flags & LB_F_MAGLEV ? 'maglev' : 'random', ...(f.flags & LB_F_AFFINITY ? [`affinity ${f.affinityTimeout}s`] : [])].join(', ');
    const vip = f.vip.includes(':') ? `[${f.vip}]` : f.vip;
    process.stdout.write(`${vip}:${f.port}/${f.proto === 6 ? 'TCP' : 'UDP'} (${scopeName(f.scope)}, ${flags}) -> ${f.backends.length ? f.backends.join(' ') : 'no backends (refused)'}\n`);
  }
  return 0;
}
