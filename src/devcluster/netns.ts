/**
 * Network namespaces and veths for kernel tests. Everything made through a
 * Sandbox is recorded and removed by `cleanup()`, in reverse order, even when
 * the test failed half-way; names carry the process id so parallel runs never
 * collide. Only addresses inside these namespaces (or loopback) are used.
 *
 *   const sb = new Sandbox('lb');
 *   t.after(() => sb.cleanup());
 *   const pod = await sb.netns('pod');           // "mlb-<pid>-pod"
 *   await sb.vethToHost(pod, { hostIf: 'h0', podIf: 'eth0', hostIp: '10.250.0.1/30', podIp: '10.250.0.2/30' });
 */
import { appendFileSync } from 'node:fs';
import { run } from '../util/exec.js';

/**
 * Creates a network namespace for a test and records its name in the test
 * runner's per-run list (MESHD_TEST_NETNS_LOG), so that the runner's leak
 * check looks at exactly the namespaces this run made, never at another run's.
 */
export async function addTestNetns(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
  const log = process.env.MESHD_TEST_NETNS_LOG;
  if (log) appendFileSync(log, `${ns}\n`);
}

export class Sandbox {
  private readonly undo: Array<() => Promise<unknown>> = [];
  private readonly tag: string;
  private static seq = 0;

  constructor(label: string) {
    Sandbox.seq += 1;
    this.tag = `m${label.slice(0, 4)}${process.pid % 100000}${Sandbox.seq}`;
  }

  /** A unique short name (<= 15 chars, fits an interface name). */
  name(suffix: string): string {
    return `${this.tag}${suffix}`.slice(0, 15);
  }

  /** Registers an undo step; run in reverse order by cleanup(). */
  defer(fn: () => Promise<unknown>): void {
    this.undo.push(fn);
  }

  async netns(suffix: string): Promise<string> {
    const ns = this.name(suffix);
    await addTestNetns(ns);
    this.defer(() => run('ip', ['netns', 'del', ns]));
    await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /**
   * An interface in the host namespace (one end of a veth pair whose other
   * end stays beside it: this kernel has no dummy device), for a program run
   * with BPF_PROG_TEST_RUN as if on a pod's veth (progTestRun's ifindex)
   * rather than on `lo`, whose ifindex is the host endpoint's key. Returns
   * its name.
   */
  async hostLink(suffix: string): Promise<string> {
    const name = this.name(suffix);
    await run('ip', ['link', 'add', name, 'type', 'veth', 'peer', 'name', this.name(`${suffix}x`)]);
    this.defer(() => run('ip', ['link', 'del', name]));
    return name;
  }

  /** Runs a command inside a namespace. */
  exec(ns: string, cmd: string, args: readonly string[], timeoutMs?: number) {
    return run('ip', ['netns', 'exec', ns, cmd, ...args], timeoutMs === undefined ? {} : { timeoutMs });
  }

  /**
   * A veth pair with one end in `ns` (as podIf) and the other in the host
   * namespace (as hostIf), both up, with the given addresses. The pod gets a
   * default route via the host end.
   */
  async vethToHost(
    ns: string,
    o: { hostIf: string; podIf: string; hostIp?: string; podIp?: string; defaultRoute?: boolean },
  ): Promise<void> {
    const tmp = this.name('t');
    await run('ip', ['link', 'add', o.hostIf, 'type', 'veth', 'peer', 'name', tmp]);
    this.defer(() => run('ip', ['link', 'del', o.hostIf]));
    await run('ip', ['link', 'set', tmp, 'netns', ns]);
    await run('ip', ['-n', ns, 'link', 'set', tmp, 'name', o.podIf]);
    if (o.hostIp) await run('ip', ['addr', 'add', o.hostIp, 'dev', o.hostIf]);
    if (o.podIp) await run('ip', ['-n', ns, 'addr', 'add', o.podIp, 'dev', o.podIf]);
    await run('ip', ['link', 'set', o.hostIf, 'up']);
    await run('ip', ['-n', ns, 'link', 'set', o.podIf, 'up']);
    if (o.defaultRoute && o.hostIp) {
      await run('ip', ['-n', ns, 'route', 'add', 'default', 'via', o.hostIp.split('/')[0] ?? '']);
    }
  }

  async cleanup(): Promise<void> {
    const errors: unknown[] = [];
    while (this.undo.length > 0) {
      const step = this.undo.pop();
      try {
        await step?.();
      } catch (e) {
        errors.push(e);
      }
    }
    if (errors.length > 0) throw new AggregateError(errors, `sandbox ${this.tag}: cleanup had ${errors.length} failure(s)`);
  }
}
