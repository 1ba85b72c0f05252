/**
 * Starting and stopping a whole agent process: configuration → source →
 * Agent → local API. Used by `meshd agent`, the demo and the tests.
 *
 *   const node = await runAgent({ config, standaloneDir: 'examples/demo' });
 *   …
 *   await node.stop();   // datapath stays enforcing
 */
import { createLogger, type Logger } from '../util/log.js';
import { Agent, type L7Proxy } from './agent.js';
import { ApiServer } from './api-server.js';
import type { AgentConfig } from './config.js';
import { registerRoutes } from './routes.js';
import { StandaloneSource } from './standalone-source.js';

export interface RunAgentOptions {
  config: AgentConfig;
  standaloneDir: string;
  log?: Logger;
  startProxy?: ((cfg: AgentConfig, log: Logger) => Promise<L7Proxy>) | null;
  /** Rescan interval of the manifest directory (the watch catches most edits sooner). */
  rescanMs?: number;
}

export interface RunningAgent {
  agent: Agent;
  api: ApiServer;
  stop(): Promise<void>;
}

export async function runAgent(o: RunAgentOptions): Promise<RunningAgent> {
  const log = o.log ?? createLogger({ component: 'agent', node: o.config.nodeName }, { format: o.config['log.format'], level: o.config['log.level'] });
  const source = new StandaloneSource({ dir: o.standaloneDir, rescanMs: o.rescanMs ?? 2_000 });
  const agent = await Agent.start({ config: o.config, source, mode: 'standalone', log, startProxy: o.startProxy ?? null });
  const api = new ApiServer(agent.socketPath('meshd'), log.child({ component: 'api' }));
  registerRoutes(api, agent);
  try {
    await api.listen();
  } catch (e) {
    await agent.stop();
    throw e;
  }
  let stopped = false;
  return {
    agent,
    api,
    async stop() {
      if (stopped) return;
      stopped = true;
      await api.close();
      await agent.stop();
    },
  };
}
