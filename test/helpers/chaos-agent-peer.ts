/**
 * The agent's proxy half as a process of its own, so that a test can
 * SIGTERM and SIGKILL it: `node dist/test/helpers/chaos-agent-peer.js '<json>'`
 * with {nodeName, stateDir, pinDir, portRange, routing, replicas, inputFile}. It
 * starts a ProxyManager on the state directory (adopting the running
 * Envoys), applies the proxy input in `inputFile` (what the agent's
 * reconciler would: endpoints and identity addresses) and prints
 * "applied <version>". SIGTERM: it detaches (the Envoys keep running) and
 * exits 0, as the agent does.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { ProxyManager } from '../../src/proxy/proxy-manager.js';
import { createLogger } from '../../src/util/log.js';

const optionsSchema = z.strictObject({
  nodeName: z.string(),
  stateDir: z.string(),
  pinDir: z.string(),
  portRange: z.tuple([z.number().int(), z.number().int()]),
  routing: z.strictObject({ mark: z.number(), mask: z.number(), table: z.number(), priority: z.number() }),
  replicas: z.number().int().positive(),
  inputFile: z.string(),
});

async function main(): Promise<void> {
  const o = optionsSchema.parse(JSON.parse(process.argv[2] ?? '{}'));
  const log = createLogger({ test: 'chaos-agent' }, { level: 'warn' });
  const proxy = await ProxyManager.start({ nodeName: o.nodeName, stateDir: o.stateDir, portRange: o.portRange, xdsMode: 'delta', log, routing: o.routing, replicas: o.replicas, ackTimeoutMs: 20_000, pinDir: o.pinDir });
  process.once('SIGTERM', () => {
    void proxy.detach().then(() => process.exit(0));
  });
  const raw: unknown = JSON.parse(readFileSync(o.inputFile, 'utf8'));
  const input = z.object({ endpoints: z.array(z.any()), identityIps: z.array(z.tuple([z.number(), z.array(z.string())])) }).parse(raw);
  const r = await proxy.apply({ endpoints: input.endpoints, identityIps: new Map(input.identityIps) });
  process.stdout.write(`applied ${r.version} ${proxy.instances().map((i) => i.pid).join(',')}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`chaos-agent-peer: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
