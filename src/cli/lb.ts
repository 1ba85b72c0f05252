/**
 * `meshd lb`: what the socket LB holds, read from the pinned maps (works
 * whether or not an agent is running; needs root).
 *
 *   meshd lb list [--pin-dir /sys/fs/bpf/meshd] [-o json|yaml]
 */
import { join } from 'node:path';
import { BpfMap } from '../../native/index.js';
import { LB_F_AFFINITY, LB_F_MAGLEV, LbMapName, Scope } from '../datapath/lb/lb-maps.js';
import { LbReconciler, type FrontendInfo } from '../datapath/lb/lb-reconciler.js';
import { DEFAULT_PIN_DIR } from '../datapath/lb/sock-lb.js';
import { MeshdError } from '../util/errors.js';
import { command, type CommandGroup } from './args.js';

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

export class LbMapsUnreadableError extends MeshdError {
  constructor(pinDir: string, cause: unknown) {
    super('MESHD_LB_MAPS_UNREADABLE', `cannot read the socket-LB maps under ${pinDir}: ${cause instanceof Error ? cause.message : String(cause)}`, { kind: 'failed', cause });
  }
}

function formatFrontend(f: FrontendInfo): string {
  const flags = [f.flags & LB_F_MAGLEV ? 'maglev' : 'random', ...(f.flags & LB_F_AFFINITY ? [`affinity ${f.affinityTimeout}s`] : [])].join(', ');
  const vip = f.vip.includes(':') ? `[${f.vip}]` : f.vip;
  return `${vip}:${f.port}/${f.proto === 6 ? 'TCP' : 'UDP'} (${scopeName(f.scope)}, ${flags}) -> ${f.backends.length ? f.backends.join(' ') : 'no backends (refused)'}`;
}

export const pinDirOption = { type: 'string', value: 'DIR', help: `the bpffs directory of meshd's pins (default ${DEFAULT_PIN_DIR})` } as const;

export const lb: CommandGroup = {
  name: 'lb',
  summary: 'the socket LB, read from its pinned maps (with or without a running agent; needs root)',
  subcommands: [
    command({ name: 'lb list', summary: 'list the Service frontends and backends the socket LB holds', options: { 'pin-dir': pinDirOption }, output: true }, (args, io) => {
      const pinDir = args.string('pin-dir') ?? DEFAULT_PIN_DIR;
      let list: FrontendInfo[];
      try {
        list = readFrontends(pinDir);
      } catch (e) {
        throw new LbMapsUnreadableError(pinDir, e);
      }
      io.out(args.format({ frontends: list }, () => list.map(formatFrontend).join('\n')));
      return 0;
    }),
  ],
};
