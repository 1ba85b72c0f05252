/**
 * `meshd agent [--config FILE] [--standalone DIR | --kubeconfig FILE] [--<key>=<value> | --set key=value]…`
 *
 * Without --standalone the agent reads the Kubernetes API (docs/kubernetes.md):
 * --kubeconfig FILE, else the config key k8sKubeconfigPath, else KUBECONFIG,
 * else the in-cluster service account (k8sServiceHost/k8sServicePort).
 *
 * Runs the node agent until SIGTERM or SIGINT, then stops it gracefully: the
 * datapath stays attached and pinned, so enforcement continues until the next
 * agent adopts it. Configuration keys: docs/agent.md (Cilium's Helm names);
 * each is accepted as an option of its own and checked against the
 * configuration schema with the file and the environment.
 */
import { resolve } from 'node:path';
import { configShape, ConfigError, loadConfig, type AgentConfig } from '../agent/config.js';
import { runAgent } from '../agent/run.js';
import { startNodeProxy } from '../agent/start-proxy.js';
import { MeshdError } from '../util/errors.js';
import { createLogger } from '../util/log.js';
import { command, UsageError, type OptionSpec } from './args.js';

const configKeyOptions: Record<string, OptionSpec> = Object.fromEntries(
  Object.keys(configShape).map((k): [string, OptionSpec] => [k, { type: 'string', value: 'VALUE', help: `configuration key ${k}`, hidden: true }]),
);

const options = {
  config: { type: 'string', value: 'FILE', help: 'a YAML file of configuration keys' },
  standalone: { type: 'string', value: 'DIR', help: 'read Kubernetes manifests from DIR instead of the API server' },
  kubeconfig: { type: 'string', value: 'FILE', help: 'the kubeconfig of the cluster (default: KUBECONFIG, then the in-cluster service account)' },
  set: { type: 'string', multiple: true, value: 'KEY=VALUE', help: 'set a configuration key' },
  ...configKeyOptions,
} as const;

function config(file: string | undefined, flags: Record<string, string>): AgentConfig {
  try {
    return loadConfig({ ...(file ? { file } : {}), flags });
  } catch (e) {
    if (e instanceof ConfigError) throw new MeshdError(e.code, e.message, { kind: 'invalid', cause: e });
    throw e;
  }
}

export const agent = command(
  {
    name: 'agent',
    summary: 'run the node agent until SIGTERM or SIGINT (the datapath stays enforcing after it stops)',
    options,
    notes: [
      'Configuration keys (docs/agent.md, Cilium\'s Helm names) are options too: --<key>=<value>, e.g. --envoy.enabled=false;',
      'precedence: flags over MESHD_<KEY> environment variables over --config FILE over defaults.',
    ],
  },
  async (args) => {
    const flags: Record<string, string> = {};
    for (const [k, v] of args.givenStrings()) if (k in configShape) flags[k] = v;
    for (const kv of args.strings('set')) {
      const eq = kv.indexOf('=');
      if (eq <= 0) throw new UsageError(`meshd agent: --set takes KEY=VALUE, not "${kv}"`);
      flags[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const cfg = config(args.string('config'), flags);
    const standalone = args.string('standalone');
    const kubeconfig = args.string('kubeconfig');
    if (standalone && kubeconfig) throw new UsageError('meshd agent: --standalone and --kubeconfig exclude each other');
    const log = createLogger({ component: 'agent', node: cfg.nodeName }, { format: cfg['log.format'], level: cfg['log.level'] });
    const node = await runAgent({
      config: cfg,
      ...(standalone ? { standaloneDir: resolve(standalone) } : {}),
      ...(kubeconfig ? { kubeconfigPath: resolve(kubeconfig) } : {}),
      log,
      startProxy: cfg['envoy.enabled'] ? startNodeProxy : null,
    });
    await new Promise<void>((done) => {
      const stop = (sig: string) => {
        log.info('stopping; the datapath stays enforcing', { signal: sig });
        void node.stop().finally(done);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
);
