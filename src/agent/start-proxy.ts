/**
 * The agent's L7 proxy: the node's Envoys behind ProxyManager, configured
 * from the agent configuration.
 *
 * `startProxy` stops the Envoys with the agent (what an embedding process or
 * a test wants). `startNodeProxy` is the `meshd agent` process's: unless
 * `proxy.stopOnShutdown` is true, a stopping agent (SIGTERM, upgrade) leaves
 * its Envoys serving, and the next agent adopts them (docs/reliability.md).
 */
import { join } from 'node:path';
import { ProxyManager, type ProxyManagerOptions } from '../proxy/proxy-manager.js';
import type { Logger } from '../util/log.js';
import type { L7Proxy } from './reconciler.js';
import type { AgentConfig } from './config.js';

/** The ProxyManager's options from the agent configuration. */
export function proxyOptions(cfg: AgentConfig, log: Logger, keepEnvoysOnStop: boolean): ProxyManagerOptions {
  return {
    nodeName: cfg.nodeName,
    stateDir: cfg.stateDir,
    portRange: cfg['proxy.portRange'],
    xdsMode: cfg['envoy.xdsMode'],
    replicas: cfg['proxy.replicas'],
    upstream: { idleTimeoutS: cfg['envoy.idleTimeoutDurationSeconds'], retries: cfg['envoy.httpRetryCount'] },
    keepEnvoysOnStop,
    // The access log feeds only the flow observer.
    accessLog: cfg['hubble.enabled'],
    // The steering maps sit with the datapath's pins (the agent's pinDir).
    pinDir: join(cfg['bpf.root'], 'meshd'),
    ...(cfg['envoy.binaryPath'] ? { envoyBinaryPath: cfg['envoy.binaryPath'] } : {}),
    log,
  };
}

function start(cfg: AgentConfig, log: Logger, keepEnvoysOnStop: boolean): Promise<ProxyManager> {
  return ProxyManager.start(proxyOptions(cfg, log, keepEnvoysOnStop));
}

export async function startProxy(cfg: AgentConfig, log: Logger): Promise<L7Proxy> {
  return start(cfg, log, false);
}

export async function startNodeProxy(cfg: AgentConfig, log: Logger): Promise<L7Proxy> {
  return start(cfg, log, !cfg['proxy.stopOnShutdown']);
}
