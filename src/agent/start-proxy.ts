/**
 * The agent's L7 proxy: the node's one Envoy behind ProxyManager, configured
 * from the agent configuration.
 */
import { ProxyManager } from '../proxy/proxy-manager.js';
import type { Logger } from '../util/log.js';
import type { L7Proxy } from './reconciler.js';
import type { AgentConfig } from './config.js';

export async function startProxy(cfg: AgentConfig, log: Logger): Promise<L7Proxy> {
  return ProxyManager.start({
    nodeName: cfg.nodeName,
    stateDir: cfg.stateDir,
    portRange: cfg['proxy.portRange'],
    xdsMode: cfg['envoy.xdsMode'],
    ...(cfg['envoy.binaryPath'] ? { envoyBinaryPath: cfg['envoy.binaryPath'] } : {}),
    log,
  });
}
