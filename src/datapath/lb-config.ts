/**
 * The socket LB's settings from Cilium-style Helm values (the keys meshd
 * shares with Cilium), validated at the boundary.
 *
 *   const c = socketLbConfig({ kubeProxyReplacement: true, socketLB: { hostNamespaceOnly: true } });
 *   if (c.ok && c.value.enabled) await ServiceManager.open({ ...c.value.options, cgroupPath });
 */
import { basename, join } from 'node:path';
import { z } from 'zod';
import { BPFFS_ROOT } from './bpffs.js';
import { MAGLEV_M } from './lb-maps.js';
import type { ServiceManagerOptions } from './service-manager.js';
import { DEFAULT_PIN_DIR } from './sock-lb.js';

const bool = z.union([z.boolean(), z.enum(['true', 'false']).transform((s) => s === 'true')]);

export const SocketLbValues = z.object({
  kubeProxyReplacement: bool.default(false),
  socketLB: z.object({ enabled: bool.optional(), hostNamespaceOnly: bool.default(false) }).default({ hostNamespaceOnly: false }),
  loadBalancer: z.object({ algorithm: z.enum(['random', 'maglev']).default('random') }).default({ algorithm: 'random' }),
  maglev: z
    .object({ tableSize: z.literal(MAGLEV_M, { message: `only ${MAGLEV_M} is supported (the table size is compiled into bpf/sock.c)` }).optional() })
    .default({}),
  bpf: z
    .object({
      lbMapMax: z.number().int().min(16).max(16_777_216).default(65536),
      /** The bpffs mount; meshd pins under <root>/meshd. */
      root: z.string().min(1).default(BPFFS_ROOT),
    })
    .default({ lbMapMax: 65536, root: BPFFS_ROOT }),
  nodeIPs: z.array(z.string()).default([]),
});

export interface SocketLbConfig {
  /** socketLB.enabled, defaulting to kubeProxyReplacement as in Cilium. */
  enabled: boolean;
  options: Pick<ServiceManagerOptions, 'pinDir' | 'hostNamespaceOnly' | 'algorithm' | 'lbMapMax' | 'nodeIPs'>;
}

export function socketLbConfig(values: unknown): { ok: true; value: SocketLbConfig } | { ok: false; errors: string[] } {
  const r = SocketLbValues.safeParse(values ?? {});
  if (!r.success) return { ok: false, errors: r.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`) };
  const v = r.data;
  return {
    ok: true,
    value: {
      enabled: v.socketLB.enabled ?? v.kubeProxyReplacement,
      options: { pinDir: join(v.bpf.root, basename(DEFAULT_PIN_DIR)), hostNamespaceOnly: v.socketLB.hostNamespaceOnly, algorithm: v.loadBalancer.algorithm, lbMapMax: v.bpf.lbMapMax, nodeIPs: v.nodeIPs },
    },
  };
}
