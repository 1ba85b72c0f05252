/**
 * Guard for tests that need root and the kernel. It fails, never skips: a
 * skipped privileged test would read as a pass in CI's summary.
 */
import { readFileSync } from 'node:fs';

const CAPS = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_BPF: 39 } as const;

export function requirePrivileges(): void {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  const eff = m?.[1] ? BigInt(`0x${m[1]}`) : 0n;
  const missing = Object.entries(CAPS)
    .filter(([, bit]) => (eff & (1n << BigInt(bit))) === 0n)
    .map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(`this test needs root (missing ${missing.join(', ')}); run the suite as root`);
  }
}
