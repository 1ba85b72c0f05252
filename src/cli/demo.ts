/**
 * `meshd demo`: the end-to-end demo on this machine (src/demo/): one node in
 * standalone mode, or `--nodes 2` across two nodes of a development cluster
 * in either routing mode. Exits 0 only if every request got its expected
 * result; removes everything it made, also on Ctrl-C.
 *
 *   meshd demo [--keep]
 *   meshd demo --nodes 2 [--routing-mode native|tunnel] [--keep]
 */
import { command, UsageError } from './args.js';

export const demo = command(
  {
    name: 'demo',
    summary: 'the end-to-end demo: policies, requests and verdicts on one node, or across two (--nodes 2)',
    options: {
      nodes: { type: 'string', value: 'N', help: 'how many nodes: 1 (standalone agent, default) or 2 (a Kubernetes API server and two nodes)' },
      'routing-mode': { type: 'string', value: 'MODE', help: 'with --nodes 2: native (default) or tunnel, as Helm value routingMode' },
      keep: { type: 'boolean', help: 'leave it all running until Ctrl-C' },
    },
  },
  async (args, io) => {
    const nodes = args.string('nodes') ?? '1';
    if (nodes !== '1' && nodes !== '2') throw new UsageError(`meshd demo: --nodes takes 1 or 2, not "${nodes}"`);
    const mode = args.string('routing-mode');
    if (mode !== undefined && mode !== 'native' && mode !== 'tunnel') throw new UsageError(`meshd demo: --routing-mode takes native or tunnel, not "${mode}"`);
    if (mode !== undefined && nodes === '1') throw new UsageError('meshd demo: --routing-mode needs --nodes 2 (one node routes nothing between nodes)');
    const o = { keep: args.flag('keep'), out: io.out, err: io.err };
    if (nodes === '2') return (await import('../demo/demo-nodes.js')).nodesDemo({ ...o, routingMode: mode ?? 'native' });
    return (await import('../demo/demo.js')).oneNodeDemo(o);
  },
);
