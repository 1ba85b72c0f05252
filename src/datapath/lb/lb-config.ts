/**
 * The socket LB's settings from the agent configuration. Keys are Cilium's
 * Helm value names, flattened with dots as the agent's configuration holds
 * them; the configuration is validated where it is loaded, so this only maps
 * it onto ServiceManager options.
 *
 *   const { enabled, options } = socketLbOptions(config);
 *   if (enabled) await ServiceManager.open({ ...options, cgroupPath });
 *
 * `loadBalancer.algorithm` and `bpf.lbMapMax` are optional here: they are
 * socket-LB keys the agent's configuration may not carry yet.
 */
import { join } from 'node:path';
import type { ServiceManagerOptions } from './service-manager.js';

export interface SocketLbSettings {
  kubeProxyReplacement: boolean;
  'socketLB.enabled': boolean;
  'socketLB.hostNamespaceOnly': boolean;
  /** The bpffs mount; meshd pins under <bpf.root>/meshd. */
  'bpf.root': string;
  'loadBalancer.algorithm'?: 'random' | 'maglev';
  'bpf.lbMapMax'?: number;
}

export interface SocketLbOptions {
  /** The socket LB runs only with kubeProxyReplacement and socketLB.enabled both on (as in Cilium). */
  enabled: boolean;
  options: Pick<ServiceManagerOptions, 'pinDir' | 'hostNamespaceOnly' | 'algorithm' | 'lbMapMax'>;
}

export function socketLbOptions(cfg: SocketLbSettings): SocketLbOptions {
  return {
    enabled: cfg.kubeProxyReplacement && cfg['socketLB.enabled'],
    options: {
      pinDir: join(cfg['bpf.root'], 'meshd'),
      hostNamespaceOnly: cfg['socketLB.hostNamespaceOnly'],
      algorithm: cfg['loadBalancer.algorithm'] ?? 'random',
      lbMapMax: cfg['bpf.lbMapMax'] ?? 65536,
    },
  };
}
