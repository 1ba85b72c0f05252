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
import { issuePaths } from '../api/route.js';
import { MeshdError } from '../util/errors.js';
import { command, UsageError, type CliIo, type CommandGroup, type Formatter } from './args.js';

const installOptions = {
  'conf-dir': { type: 'string', value: 'DIR', help: 'the CNI configuration directory (required), e.g. /etc/cni/net.d' },
  'bin-dir': { type: 'string', value: 'DIR', help: 'the CNI plugin directory (required), e.g. /opt/cni/bin' },
  exclusive: { type: 'string', value: 'true|false', help: 'true (default): meshd is the only CNI configuration; false: chained after the existing one' },
  'pod-cidr': { type: 'string', value: 'CIDR', help: "this node's pod CIDR for host-local IPAM (exclusive mode)" },
  'agent-socket': { type: 'string', value: 'PATH', help: "the agent's CNI endpoint socket the plugin calls" },
  'state-dir': { type: 'string', value: 'DIR', help: "the plugin's state directory" },
  mtu: { type: 'string', value: 'N', help: 'the pod interfaces\' MTU' },
  'cni-version': { type: 'string', value: SUPPORTED_VERSIONS.join('|'), help: 'the CNI spec version written in the configuration' },
} as const;

/** Values the options take (parseArgs has checked names and presence; this checks values). */
const InstallValues = z.object({
  'conf-dir': z.string({ message: 'required' }).min(1),
  'bin-dir': z.string({ message: 'required' }).min(1),
  exclusive: z.enum(['true', 'false']).default('true'),
  mtu: z.string().regex(/^\d+$/, 'expected a positive integer').optional(),
  'cni-version': z.enum(SUPPORTED_VERSIONS).optional(),
});

function checked<T extends z.ZodType>(name: string, schema: T, values: unknown): z.output<T> {
  const r = schema.safeParse(values);
  if (!r.success) throw new UsageError(`meshd ${name}: ${issuePaths(r.error).map((p) => `--${p}`).join('; ')}; see "meshd ${name} --help"`);
  return r.data;
}

/** The installer's errors under their own codes, with a kind for the exit status. */
function installed(args: Formatter, io: CliIo, run: () => InstallReport): number {
  let report: InstallReport;
  try {
    report = run();
  } catch (e) {
    if (e instanceof InstallError) throw new MeshdError(e.code, e.message, { kind: e.code === 'MESHD_CNI_INSTALL_BAD_OPTION' ? 'invalid' : 'failed', cause: e });
    throw e;
  }
  io.out(args.format(report, () => [...(report.changed ? [] : ['nothing to do: already installed as requested']), ...report.actions].join('\n')));
  return 0;
}

export const cni: CommandGroup = {
  name: 'cni',
  summary: 'install or uninstall the CNI configuration and the meshd-cni plugin',
  subcommands: [
    command({ name: 'cni install', summary: 'write the CNI configuration and install the meshd-cni plugin', options: installOptions, output: true }, (args, io) => {
      const v = checked('cni install', InstallValues, {
        'conf-dir': args.string('conf-dir'),
        'bin-dir': args.string('bin-dir'),
        exclusive: args.string('exclusive'),
        mtu: args.string('mtu'),
        'cni-version': args.string('cni-version'),
      });
      return installed(args, io, () =>
        installCni({
          confDir: v['conf-dir'],
          binDir: v['bin-dir'],
          exclusive: v.exclusive === 'true',
          podCIDR: args.string('pod-cidr'),
          agentSocket: args.string('agent-socket'),
          stateDir: args.string('state-dir'),
          mtu: v.mtu === undefined ? undefined : Number(v.mtu),
          cniVersion: v['cni-version'],
        }),
      );
    }),
    command(
      {
        name: 'cni uninstall',
        summary: "remove meshd's CNI configuration (and the plugin, with --bin-dir)",
        options: { 'conf-dir': installOptions['conf-dir'], 'bin-dir': { type: 'string', value: 'DIR', help: 'also remove the meshd-cni plugin from this directory' } },
        output: true,
      },
      (args, io) => {
        const v = checked('cni uninstall', InstallValues.pick({ 'conf-dir': true }), { 'conf-dir': args.string('conf-dir') });
        return installed(args, io, () => uninstallCni({ confDir: v['conf-dir'], binDir: args.string('bin-dir') }));
      },
    ),
  ],
};
