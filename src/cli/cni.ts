/**
 * `meshd cni install|uninstall`: puts meshd's CNI configuration and plugin
 * executable in place (see src/cni/installer.ts for what each mode does).
 *
 *   meshd cni install --conf-dir /etc/cni/net.d --bin-dir /opt/cni/bin [--exclusive=true|false]
 *                     [--pod-cidr 10.244.1.0/24] [--agent-socket PATH] [--state-dir DIR] [--mtu N] [--cni-version V]
 *   meshd cni uninstall --conf-dir /etc/cni/net.d [--bin-dir /opt/cni/bin]
 */
import { z } from 'zod';
import { SUPPORTED_VERSIONS } from '../cni/cni-spec.js';
import { InstallError, installCni, uninstallCni, type InstallReport } from '../cni/installer.js';

export const CNI_USAGE = [
  'Usage:',
  '  meshd cni install --conf-dir DIR --bin-dir DIR [--exclusive=true|false] [--pod-cidr CIDR]',
  '                    [--agent-socket PATH] [--state-dir DIR] [--mtu N] [--cni-version 0.4.0|1.0.0|1.1.0]',
  '  meshd cni uninstall --conf-dir DIR [--bin-dir DIR]',
].join('\n');

class UsageError extends Error {
  readonly code = 'MESHD_CLI_USAGE';
}

/** Parses "--name value" and "--name=value" pairs; every flag takes a value. */
export function parseFlags(args: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i += 1) {
    const a = args[i] ?? '';
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument "${a}"`);
    const eq = a.indexOf('=');
    if (eq > 0) {
      out[a.slice(2, eq)] = a.slice(eq + 1);
    } else {
      const v = args[i + 1];
      if (v === undefined || v.startsWith('--')) throw new UsageError(`${a} needs a value`);
      out[a.slice(2)] = v;
      i += 1;
    }
  }
  return out;
}

const InstallFlags = z.strictObject({
  'conf-dir': z.string().min(1),
  'bin-dir': z.string().min(1),
  exclusive: z.enum(['true', 'false']).default('true'),
  'pod-cidr': z.string().optional(),
  'agent-socket': z.string().min(1).optional(),
  'state-dir': z.string().min(1).optional(),
  mtu: z.string().regex(/^\d+$/).optional(),
  'cni-version': z.enum(SUPPORTED_VERSIONS).optional(),
});

const UninstallFlags = z.strictObject({
  'conf-dir': z.string().min(1),
  'bin-dir': z.string().min(1).optional(),
});

function flagIssues(e: z.ZodError): string {
  return e.issues
    .map((i) => {
      if (i.code === 'unrecognized_keys') return `unknown option ${i.keys.map((k) => `--${k}`).join(', ')}`;
      return `--${i.path.join('.')}: ${i.message}`;
    })
    .join('; ');
}

function print(report: InstallReport): void {
  if (!report.changed) process.stdout.write('nothing to do: already installed as requested\n');
  for (const a of report.actions) process.stdout.write(`${a}\n`);
}

export async function runCni(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  try {
    if (sub === 'help' || sub === '--help' || sub === '-h') {
      process.stdout.write(`${CNI_USAGE}\n`);
      return 0;
    }
    if (sub === 'install') {
      const f = InstallFlags.safeParse(parseFlags(rest));
      if (!f.success) throw new UsageError(flagIssues(f.error));
      print(
        installCni({
          confDir: f.data['conf-dir'],
          binDir: f.data['bin-dir'],
          exclusive: f.data.exclusive === 'true',
          podCIDR: f.data['pod-cidr'],
          agentSocket: f.data['agent-socket'],
          stateDir: f.data['state-dir'],
          mtu: f.data.mtu === undefined ? undefined : Number(f.data.mtu),
          cniVersion: f.data['cni-version'],
        }),
      );
      return 0;
    }
    if (sub === 'uninstall') {
      const f = UninstallFlags.safeParse(parseFlags(rest));
      if (!f.success) throw new UsageError(flagIssues(f.error));
      print(uninstallCni({ confDir: f.data['conf-dir'], binDir: f.data['bin-dir'] }));
      return 0;
    }
    throw new UsageError(sub === undefined ? 'missing subcommand' : `unknown subcommand "${sub}"`);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`meshd cni: ${e.message}\n\n${CNI_USAGE}\n`);
      return 2;
    }
    if (e instanceof InstallError) {
      process.stderr.write(`meshd cni: ${e.message} (${e.code})\n`);
      return 1;
    }
    process.stderr.write(`meshd cni: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
