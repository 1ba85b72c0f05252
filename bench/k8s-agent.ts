/**
 * One meshd node of `bench/k8s.ts`, in its own process so its heap, RSS and
 * API requests are its own: an agent in Kubernetes mode (test/helpers/agent-node.ts:
 * its own state dir, pin dir, cgroup, CNI dirs and pod CIDR), driven over the
 * IPC channel of `child_process.fork` (run with --expose-gc):
 *
 *   → {op:'start', nodeName, podCIDR, kubeconfigPath}   ← {op:'started', ms, bpfRoot, cniConfDir, cniBinDir}
 *   → {op:'restart'}                                     ← {op:'restarted', ms}   (stop, then start against the cluster as it is)
 *   → {op:'stats', gc}                                   ← {op:'stats', heapUsed, rss, requests, objects}  (gc: after a forced GC)
 *   → {op:'profile', file?}                              ← {op:'profiled'}       (no file: start a V8 CPU profile; file: stop it and write it there)
 *   → {op:'stop'}                                        ← {op:'stopped'}        (everything removed; the process exits)
 *
 * A failure is answered with {op:'error', message}.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { z } from 'zod';
import { kubeRequestCounts } from '../src/k8s/client.js';
import type { KubeSourceOptions } from '../src/k8s/kube-source.js';
import { createLogger } from '../src/util/log.js';
import { AgentNode } from '../test/helpers/agent-node.js';

/** What the parent sends; validated before use. */
export const AgentRequest = z.discriminatedUnion('op', [
  z.object({ op: z.literal('start'), nodeName: z.string().min(1), podCIDR: z.string().min(1), kubeconfigPath: z.string().min(1) }),
  z.object({ op: z.literal('restart') }),
  /** `gc`: collect first (heap figures); without it a cheap look at the object counts. */
  z.object({ op: z.literal('stats'), gc: z.boolean() }),
  z.object({ op: z.literal('profile'), file: z.string().min(1).optional() }),
  z.object({ op: z.literal('stop') }),
]);
export type AgentRequest = z.infer<typeof AgentRequest>;

/** What the child answers; validated by the parent. */
export const AgentReply = z.discriminatedUnion('op', [
  z.object({ op: z.literal('started'), ms: z.number(), bpfRoot: z.string(), cniConfDir: z.string(), cniBinDir: z.string() }),
  z.object({ op: z.literal('restarted'), ms: z.number() }),
  z.object({
    op: z.literal('stats'),
    heapUsed: z.number(),
    rss: z.number(),
    requests: z.object({ total: z.number(), byVerb: z.record(z.string(), z.number()) }),
    /** Objects the agent's source holds, per kind. */
    objects: z.record(z.string(), z.number()),
  }),
  z.object({ op: z.literal('profiled') }),
  z.object({ op: z.literal('stopped') }),
  z.object({ op: z.literal('error'), message: z.string() }),
]);
export type AgentReply = z.infer<typeof AgentReply>;

/** The source's tuning of the integration tests: short batches, quick retries. */
const SOURCE: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 1_000 };

let node: AgentNode | null = null;
/** The inspector session of a profile in progress (op 'profile'). */
let profiler: Session | null = null;
let kubeconfigPath = '';

function collect(): void {
  const gc = globalThis.gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc(); // a second pass frees what the first one's finalizers released
}

async function startAgent(n: AgentNode): Promise<number> {
  const t0 = performance.now();
  // warn and above only: the agent's own log lines would otherwise be a large part of what is measured.
  const log = createLogger({ component: 'agent', node: n.config.nodeName }, { format: 'json', level: 'warn' });
  await n.start({ standaloneDir: undefined, kubeconfigPath, kubeSource: SOURCE, log });
  return performance.now() - t0;
}

async function handle(req: AgentRequest): Promise<AgentReply> {
  switch (req.op) {
    case 'start': {
      if (node) throw new Error('started already');
      kubeconfigPath = req.kubeconfigPath;
      node = new AgentNode({ nodeName: req.nodeName, 'ipam.podCIDR': req.podCIDR, 'log.level': 'warn' });
      mkdirSync(node.manifests, { recursive: true }); // cleanup() restarts a stopped agent standalone for CNI DEL
      const ms = await startAgent(node);
      return { op: 'started', ms, bpfRoot: node.config['bpf.root'], cniConfDir: node.config['cni.confDir'], cniBinDir: node.config['cni.binDir'] };
    }
    case 'restart': {
      if (!node) throw new Error('not started');
      await node.stopAgent();
      collect();
      return { op: 'restarted', ms: await startAgent(node) };
    }
    case 'stats': {
      if (req.gc) collect();
      const mem = process.memoryUsage();
      const kinds = node?.running?.kube?.connection().kinds ?? {};
      const objects = Object.fromEntries(Object.entries(kinds).map(([k, v]) => [k, v.objects]));
      return { op: 'stats', heapUsed: mem.heapUsed, rss: mem.rss, requests: kubeRequestCounts(), objects };
    }
    case 'profile': {
      if (req.file === undefined) {
        if (profiler) throw new Error('profiling already');
        profiler = new Session();
        profiler.connect();
        await profiler.post('Profiler.enable');
        await profiler.post('Profiler.start');
      } else {
        if (!profiler) throw new Error('not profiling');
        const { profile } = await profiler.post('Profiler.stop');
        profiler.disconnect();
        profiler = null;
        writeFileSync(req.file, JSON.stringify(profile));
      }
      return { op: 'profiled' };
    }
    case 'stop': {
      await node?.cleanup();
      node = null;
      return { op: 'stopped' };
    }
  }
}

const send = (r: AgentReply): void => void process.send?.(r);

process.on('message', (raw: unknown) => {
  const req = AgentRequest.safeParse(raw);
  if (!req.success) {
    send({ op: 'error', message: `bad request: ${req.error.issues[0]?.message ?? ''}` });
    return;
  }
  handle(req.data).then(
    (r) => {
      // Stopped: leave once the answer is out (handles the agent's libraries keep would hold the process).
      if (r.op === 'stopped') process.send?.(r, () => process.exit(0));
      else send(r);
    },
    (e: unknown) => send({ op: 'error', message: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
  );
});
// The parent went away without a stop: remove what this node made before leaving.
process.on('disconnect', () => {
  if (!node) return;
  const n = node;
  node = null;
  void n.cleanup().finally(() => process.exit(1));
});
