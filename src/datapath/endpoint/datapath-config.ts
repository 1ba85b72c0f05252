/**
 * The endpoint datapath's tunables: one row (key 0) of meshd_config, read by
 * every packet. The ipcache generation lives in the same row, so a config
 * write carries the current generation through and an ipcache write bumps it
 * without touching the tunables.
 *
 *   const cfg = new DatapathConfigMap(fds.config);
 *   cfg.write({ ...cfg.read(), verdictSample: 10 }, cfg.ipcacheGen());
 *
 * Blocking (one bpf() syscall per call). Throws MESHD_DATAPATH_CONFIG_INVALID
 * before writing anything the program could misread.
 */
import { BPF_ANY, native, u32 } from '../../../native/index.js';
import { DatapathConfig } from '../maps.js';
import { ConfigFlag, Mark } from '../abi.js';
import { DatapathError } from './errors.js';

export interface DatapathConfigInput {
  /** Mark put on packets assigned to the proxy; must match the `ip rule fwmark` (default 0xb00/0xf00). */
  proxyMark: number;
  proxyMarkMask: number;
  /** Where the proxy's transparent listeners are looked up (default 127.0.0.1). */
  proxyIpv4: string;
  /** 0: no verdict events for new connections; 1: all; N: one in N. */
  verdictSample: number;
  /** socketLB.hostNamespaceOnly=true: translate service VIPs per packet for pod sockets. */
  perPacketLb: boolean;
  sockmapShortcut: boolean;
  /** policyAuditMode: would-be policy drops are reported (audit events) and pass; leaving it re-judges established connections. */
  policyAuditMode: boolean;
  /** routingMode=tunnel: pod traffic to another node's pod CIDR is encapsulated (meshd_tunnel); off, the tunnel is not looked at. */
  tunnel: boolean;
  /** hostFirewall.enabled: the pods' veths judge traffic between the host and its local pods by the host endpoint's policy; off, that step is skipped. */
  hostFirewall: boolean;
}

export const defaultDatapathConfig: DatapathConfigInput = {
  proxyMark: Mark.MAGIC_PROXY,
  proxyMarkMask: Mark.MAGIC_MASK,
  proxyIpv4: '127.0.0.1',
  verdictSample: 0,
  perPacketLb: false,
  sockmapShortcut: false,
  policyAuditMode: false,
  tunnel: false,
  hostFirewall: false,
};


const KEY = u32(0);

function invalid(message: string): DatapathError {
  return new DatapathError('MESHD_DATAPATH_CONFIG_INVALID', message);
}

function ipv4ToNumber(ip: string): number {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  if (!m || m.slice(1, 5).some((x) => Number(x) > 255)) throw invalid(`config.proxyIpv4: "${ip}" is not an IPv4 address`);
  return m.slice(1, 5).reduce((acc, x) => acc * 256 + Number(x), 0);
}

/** Throws MESHD_DATAPATH_CONFIG_INVALID for a value the program would misread. */
export function validateDatapathConfig(c: DatapathConfigInput): void {
  ipv4ToNumber(c.proxyIpv4);
  if ((c.proxyMark & ~c.proxyMarkMask) !== 0) throw invalid('config.proxyMark: bits outside proxyMarkMask');
  if (!Number.isInteger(c.verdictSample) || c.verdictSample < 0) throw invalid('config.verdictSample: not a non-negative integer');
}

export class DatapathConfigMap {
  constructor(private readonly fd: number) {}

  /** What the pinned row holds (the defaults for a fresh map). */
  read(): DatapathConfigInput {
    const raw = native.mapLookup(this.fd, KEY, DatapathConfig.size);
    if (!raw) return { ...defaultDatapathConfig };
    const c = DatapathConfig.decode(raw);
    if (c.proxy_mark === 0 && c.proxy_ipv4 === 0) return { ...defaultDatapathConfig };
    const ip = c.proxy_ipv4;
    return {
      proxyMark: c.proxy_mark,
      proxyMarkMask: c.proxy_mark_mask,
      proxyIpv4: `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`,
      verdictSample: c.verdict_sample,
      perPacketLb: (c.flags & ConfigFlag.PER_PACKET_LB) !== 0,
      sockmapShortcut: (c.flags & ConfigFlag.SOCKMAP_SHORTCUT) !== 0,
      policyAuditMode: (c.flags & ConfigFlag.POLICY_AUDIT) !== 0,
      tunnel: (c.flags & ConfigFlag.TUNNEL) !== 0,
      hostFirewall: (c.flags & ConfigFlag.HOST_FIREWALL) !== 0,
    };
  }

  ipcacheGen(): number {
    const raw = native.mapLookup(this.fd, KEY, DatapathConfig.size);
    return raw ? DatapathConfig.decode(raw).ipcache_gen : 0;
  }

  write(c: DatapathConfigInput, ipcacheGen: number): void {
    validateDatapathConfig(c);
    // Leaving (or entering) audit mode: established connections are judged again once (the generation is part of theirs).
    if (c.policyAuditMode !== this.read().policyAuditMode) ipcacheGen += 1;
    const value = DatapathConfig.encode({
      proxy_mark: c.proxyMark >>> 0,
      proxy_mark_mask: c.proxyMarkMask >>> 0,
      ipcache_gen: ipcacheGen >>> 0,
      verdict_sample: c.verdictSample >>> 0,
      flags: (c.perPacketLb ? ConfigFlag.PER_PACKET_LB : 0) | (c.sockmapShortcut ? ConfigFlag.SOCKMAP_SHORTCUT : 0) | (c.policyAuditMode ? ConfigFlag.POLICY_AUDIT : 0) |
        (c.tunnel ? ConfigFlag.TUNNEL : 0) | (c.hostFirewall ? ConfigFlag.HOST_FIREWALL : 0),
      proxy_ipv4: ipv4ToNumber(c.proxyIpv4),
    });
    native.mapUpdate(this.fd, KEY, value, BPF_ANY);
  }

  /** Tells established connections that the ipcache changed (they re-resolve identities once). */
  bumpIpcacheGen(c: DatapathConfigInput): void {
    this.write(c, this.ipcacheGen() + 1);
  }
}
