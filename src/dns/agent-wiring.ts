/**
 * The few facts the agent needs to wire the DNS proxy in: its port, the
 * datapath's redirect port per L7 kind with DNS going to it, and the
 * addresses conntrack still uses (an expired FQDN address stays while one
 * does).
 */
import { join } from 'node:path';
import type { AgentConfig } from '../agent/config.js';
import type { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import type { Direction, L7Kind } from '../policy/types.js';
import { ProxyPorts } from '../proxy/proxy-ports.js';

/**
 * dnsProxy.proxyPort, or (0) the highest port of proxy.portRange, persisted in
 * `<stateDir>/dns-proxy-port.json` so it stays the same across restarts. Envoy's listeners take
 * their ports from the bottom of the range (src/proxy/proxy-ports.ts), so the two never meet and
 * adding the DNS proxy moves no Envoy port.
 */
export function dnsProxyPort(cfg: AgentConfig): number {
  if (cfg['dnsProxy.proxyPort'] !== 0) return cfg['dnsProxy.proxyPort'];
  const hi = cfg['proxy.portRange'][1];
  return ProxyPorts.open({ stateFile: join(cfg.stateDir, 'dns-proxy-port.json'), range: [hi, hi] }).portFor('dns', 'egress');
}

/** The datapath's proxy port per kind: DNS to the DNS proxy, the rest as `others` says. */
export function withDnsPort(others: (kind: L7Kind, direction: Direction) => number, dnsPort: number): (kind: L7Kind, direction: Direction) => number {
  return (kind, direction) => (kind === 'dns' ? dnsPort : others(kind, direction));
}

function ipText(family: number, raw: Buffer): string {
  if (family === 4) return `${raw[0]}.${raw[1]}.${raw[2]}.${raw[3]}`;
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(raw.readUInt16BE(i).toString(16));
  // The compressed form, as the cache keeps addresses (e.g. 2001:db8::1).
  return new URL(`http://[${parts.join(':')}]/`).hostname.slice(1, -1);
}

/** The remote addresses of every conntrack entry (one map walk), as a membership test. */
export function conntrackRemoteIps(dp: Pick<EndpointManager, 'conntrack'>): (ip: string) => boolean {
  const ips = new Set<string>();
  for (const e of dp.conntrack()) ips.add(ipText(e.key.family, e.key.remote));
  return (ip) => ips.has(ip);
}
