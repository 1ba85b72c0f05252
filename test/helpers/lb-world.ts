/**
 * A small world for socket-LB tests: a pod network namespace joined to the
 * host by a veth, a test cgroup, a private pin directory, peer processes
 * (test/helpers/lb-peer.ts) serving inside the pod, and clients run inside
 * the cgroup (host namespace or pod namespace). Everything is removed by
 * cleanup(), even after a failure.
 *
 *   const w = await LbWorld.create('sock');
 *   t.after(() => w.cleanup());
 *   await w.serve('tcp', w.podIp, 8080, 'b1');
 *   const [r] = await w.tcp('10.96.0.10', 80, 1);      // from the host namespace, inside the cgroup
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { repoPath } from '../../src/util/paths.js';
import { run } from '../../src/util/exec.js';
import { tempCgroup, tempPinDir, type TempDir } from './bpffs.js';
import { Sandbox } from '../../src/devcluster/netns.js';

export type PeerResult = { reply: string; peer?: string; from?: string } | { error: string };

const PEER = repoPath('dist', 'test', 'helpers', 'lb-peer.js');
let worlds = 0;

export class LbWorld {
  private readonly procs: ChildProcess[] = [];

  private constructor(
    readonly sb: Sandbox,
    readonly pins: TempDir,
    readonly cgroup: TempDir,
    readonly pod: string,
    readonly hostIp: string,
    readonly podIp: string,
    /** A /24 free for VIPs in this world: `${vipNet}.N`. */
    readonly vipNet: string,
  ) {}

  static async create(label: string): Promise<LbWorld> {
    worlds += 1;
    // Addresses derived from the pid so parallel test files do not collide.
    const a = 200 + (process.pid % 50);
    const b = ((process.pid >> 6) % 60) * 4 + (worlds % 4);
    const sb = new Sandbox(label);
    const pins = tempPinDir(label);
    const cgroup = tempCgroup(label);
    try {
      const pod = await sb.netns('p');
      const hostIp = `10.${a}.${b}.1`;
      const podIp = `10.${a}.${b}.2`;
      await sb.vethToHost(pod, { hostIf: sb.name('h'), podIf: 'eth0', hostIp: `${hostIp}/30`, podIp: `${podIp}/30`, defaultRoute: true });
      return new LbWorld(sb, pins, cgroup, pod, hostIp, podIp, `10.${a - 100}.${b}`);
    } catch (e) {
      // The setup error is the one to report; a cleanup failure here would only hide it (and netns cleanup names what it could not remove).
      await sb.cleanup().catch(() => undefined);
      cgroup.cleanup();
      pins.cleanup();
      throw e;
    }
  }

  /** Starts a peer server inside the pod namespace and waits until it listens. */
  async serve(proto: 'tcp' | 'udp', ip: string, port: number, name: string, ns: string = this.pod): Promise<void> {
    const p = spawn('ip', ['netns', 'exec', ns, process.execPath, PEER, 'serve', proto, ip, String(port), name], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.push(p);
    await new Promise<void>((resolve, reject) => {
      let err = '';
      const t = setTimeout(() => reject(new Error(`peer ${name} did not start: ${err}`)), 5000);
      p.stderr?.on('data', (d) => (err += String(d)));
      p.stdout?.on('data', (d) => {
        if (String(d).includes('ready')) {
          clearTimeout(t);
          resolve();
        }
      });
      p.on('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`peer ${name} exited ${code}: ${err}`));
      });
    });
  }

  /** Runs the peer client inside the test cgroup, in the host namespace or `ns`. */
  async client(mode: 'connect' | 'udp', ip: string, port: number, count: number, ns?: string): Promise<PeerResult[]> {
    const inner = [...(ns ? ['ip', 'netns', 'exec', ns] : []), process.execPath, PEER, mode, ip, String(port), String(count)];
    const { stdout } = await run('bash', ['-c', `echo $$ > "$0/cgroup.procs" && exec "$@"`, this.cgroup.path, ...inner], { timeoutMs: 60_000 });
    const parsed: unknown = JSON.parse(stdout.trim().split('\n').pop() ?? '[]');
    if (!Array.isArray(parsed)) throw new Error(`lb-peer: unexpected output ${stdout}`);
    return parsed.map((r: unknown): PeerResult => {
      if (typeof r === 'object' && r !== null && 'reply' in r && typeof r.reply === 'string') {
        return {
          reply: r.reply,
          ...('peer' in r && typeof r.peer === 'string' ? { peer: r.peer } : {}),
          ...('from' in r && typeof r.from === 'string' ? { from: r.from } : {}),
        };
      }
      return { error: typeof r === 'object' && r !== null && 'error' in r ? String(r.error) : 'unparsed' };
    });
  }

  tcp(ip: string, port: number, count = 1, ns?: string): Promise<PeerResult[]> {
    return this.client('connect', ip, port, count, ns);
  }

  udp(ip: string, port: number, count = 1, ns?: string): Promise<PeerResult[]> {
    return this.client('udp', ip, port, count, ns);
  }

  async cleanup(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    await Promise.all(this.procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : null)));
    this.procs.length = 0;
    const errors: unknown[] = [];
    for (const step of [() => this.sb.cleanup(), () => this.cgroup.cleanup(), () => this.pins.cleanup()]) {
      try {
        await step();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, 'LbWorld cleanup failed');
  }
}
