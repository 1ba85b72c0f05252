/**
 * `meshd agent [--config FILE] [--standalone DIR] [--<key>=<value> | --set key=value]…`
 *
 * Runs the node agent until SIGTERM or SIGINT, then stops it gracefully: the
 * datapath stays attached and pinned, so enforcement continues until the next
 * agent adopts it. Configuration keys: docs/agent.md (Cilium's Helm names).
 */
import { resolve } from 'node:path';
import { configFlags, ConfigError, loadConfig } from '../agent/config.js';
import { runAgent } from '../agent/run.js';
import { startProxy } from '../agent/start-proxy.js';
import { createLogger } from '../util/log.js';

export async function runAgentCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof configFlags>;
  try {
    parsed = configFlags(argv);
  } catch (e) {
    process.stderr.write(`meshd agent: ${e instanceof Error ? e.message : String(e)}\n`);
    return 2;
  }
  let file: string | undefined;
  let standalone: string | undefined;
  for (let i = 0; i < parsed.rest.length; i++) {
    const a = parsed.rest[i];
    if (a === '--config') file = parsed.rest[++i];
    else if (a?.startsWith('--config=')) file = a.slice('--config='.length);
    else if (a === '--standalone') standalone = parsed.rest[++i];
    else if (a?.startsWith('--standalone=')) standalone = a.slice('--standalone='.length);
    else {
      process.stderr.write(`meshd agent: unknown argument "${a}"\n`);
      return 2;
    }
  }
  let config;
  try {
    config = loadConfig({ ...(file ? { file } : {}), flags: parsed.flags });
  } catch (e) {
    process.stderr.write(`meshd agent: ${e instanceof ConfigError ? e.message : String(e)}\n`);
    return 2;
  }
  if (!standalone) {
    process.stderr.write('meshd agent: the Kubernetes resource source is not available yet; run with --standalone DIR (a directory of manifests)\n');
    return 2;
  }
  const log = createLogger({ component: 'agent', node: config.nodeName }, { format: config['log.format'], level: config['log.level'] });
  const node = await runAgent({ config, standaloneDir: resolve(standalone), log, startProxy: config['envoy.enabled'] ? startProxy : null });
  await new Promise<void>((done) => {
    const stop = (sig: string) => {
      log.info('stopping; the datapath stays enforcing', { signal: sig });
      void node.stop().finally(done);
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  return 0;
}
