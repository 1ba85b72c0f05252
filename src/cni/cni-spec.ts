/**
 * The parts of the CNI specification (1.1.0) that meshd-cni speaks: the
 * versions it accepts, the well-known error codes, the network configuration
 * it reads from stdin and the Result it prints. Everything that enters the
 * plugin from the runtime is validated here, once; the rest of src/cni trusts
 * the typed values.
 *
 *   const conf = parseNetConf(stdinText);            // throws CniError
 *   process.stdout.write(formatResult(result, conf.cniVersion));
 *
 * Spec: https://github.com/containernetworking/cni/blob/main/SPEC.md
 */
import * as z from 'zod';
import { MeshdError, type ErrorKind } from '../util/errors.js';
import { DEFAULT_ENDPOINT_SOCKET } from './endpoint-api.js';

/** Spec versions this plugin accepts in a configuration, oldest first. */
export const SUPPORTED_VERSIONS = ['0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/**
 * The numeric codes of the CNI error JSON. 1–99 are the spec's well-known
 * codes (meaning fixed by the spec); 100 and above are meshd's own. They are
 * what a runtime sees; meshd's own callers and tests match the stable string
 * code (MESHD_CNI_*), which the error JSON carries in `details`.
 */
export const CniCode = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE_FAILURE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  IPAM_EXHAUSTED: 100,
  AGENT_REJECTED: 101,
  LINK_FAILED: 102,
  CHECK_FAILED: 103,
} as const;

const KIND_OF_CNI_CODE: Readonly<Record<number, ErrorKind>> = {
  [CniCode.INCOMPATIBLE_VERSION]: 'invalid',
  [CniCode.UNSUPPORTED_FIELD]: 'invalid',
  [CniCode.UNKNOWN_CONTAINER]: 'not-found',
  [CniCode.INVALID_ENV]: 'usage',
  [CniCode.DECODE_FAILURE]: 'invalid',
  [CniCode.INVALID_CONFIG]: 'invalid',
  [CniCode.TRY_AGAIN_LATER]: 'unavailable',
  [CniCode.NOT_AVAILABLE]: 'unavailable',
  [CniCode.AGENT_REJECTED]: 'invalid',
};

/**
 * An error the plugin reports to the runtime. `code` is meshd's stable
 * string (e.g. MESHD_CNI_IPAM_EXHAUSTED); `cniCode` the spec's number.
 */
export class CniError extends MeshdError {
  constructor(
    readonly cniCode: number,
    code: string,
    message: string,
    /** Extra detail for the error JSON, e.g. the agent's own error code. */
    readonly detail?: string,
    opts: { cause?: unknown } = {},
  ) {
    super(code, message, { kind: KIND_OF_CNI_CODE[cniCode] ?? 'failed', cause: opts.cause });
  }

  toJSON(cniVersion: string): Record<string, unknown> {
    return {
      cniVersion,
      code: this.cniCode,
      msg: this.message,
      details: this.detail ? `${this.code}: ${this.detail}` : this.code,
    };
  }
}

/** Formats zod issues as "path: message; path: message". */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .map((i) => `${i.path.length > 0 ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

// ---- Result (the shape is the same for 0.4.0, 1.0.0 and 1.1.0 except as noted) ----

const InterfaceSchema = z.looseObject({
  name: z.string().min(1),
  mac: z.string().optional(),
  mtu: z.number().int().optional(), // 1.1.0
  sandbox: z.string().optional(),
  socketPath: z.string().optional(), // 1.1.0
  pciID: z.string().optional(), // 1.1.0
});

const IpConfigSchema = z.looseObject({
  version: z.enum(['4', '6']).optional(), // 0.4.0 only
  address: z.string().min(1),
  gateway: z.string().optional(),
  interface: z.number().int().nonnegative().optional(),
});

const RouteSchema = z.looseObject({
  dst: z.string().min(1),
  gw: z.string().optional(),
  mtu: z.number().int().optional(), // 1.1.0
  advmss: z.number().int().optional(), // 1.1.0
  priority: z.number().int().optional(), // 1.1.0
  table: z.number().int().optional(), // 1.1.0
  scope: z.number().int().optional(), // 1.1.0
});

const DnsSchema = z.looseObject({
  nameservers: z.array(z.string()).optional(),
  domain: z.string().optional(),
  search: z.array(z.string()).optional(),
  options: z.array(z.string()).optional(),
});

export const ResultSchema = z.looseObject({
  cniVersion: z.string().optional(),
  interfaces: z.array(InterfaceSchema).optional(),
  ips: z.array(IpConfigSchema).optional(),
  routes: z.array(RouteSchema).optional(),
  dns: DnsSchema.optional(),
});

export type CniInterface = z.infer<typeof InterfaceSchema>;
export type CniIpConfig = z.infer<typeof IpConfigSchema>;
export type CniRoute = z.infer<typeof RouteSchema>;
export type CniResult = z.infer<typeof ResultSchema>;

const V11_INTERFACE_FIELDS = ['mtu', 'socketPath', 'pciID'] as const;
const V11_ROUTE_FIELDS = ['mtu', 'advmss', 'priority', 'table', 'scope'] as const;

function ipFamily(address: string): '4' | '6' {
  return address.includes(':') ? '6' : '4';
}

/**
 * The Result as JSON for the configuration's version: 0.4.0 carries an IP
 * `version` field and lacks the 1.1.0 additions; 1.x has no `version`.
 */
export function formatResult(result: CniResult, cniVersion: CniVersion): string {
  const v11 = cniVersion === '1.1.0';
  const interfaces = (result.interfaces ?? []).map((i) => {
    const out: Record<string, unknown> = { ...i };
    if (!v11) for (const f of V11_INTERFACE_FIELDS) delete out[f];
    return out;
  });
  const ips = (result.ips ?? []).map((ip) => {
    const out: Record<string, unknown> = { ...ip };
    if (cniVersion === '0.4.0') out.version = ipFamily(ip.address);
    else delete out.version;
    return out;
  });
  const routes = (result.routes ?? []).map((r) => {
    const out: Record<string, unknown> = { ...r };
    if (!v11) for (const f of V11_ROUTE_FIELDS) delete out[f];
    return out;
  });
  const json: Record<string, unknown> = { cniVersion, interfaces, ips, routes, dns: result.dns ?? {} };
  return JSON.stringify(json);
}

// ---- Network configuration (one plugin's entry of a conflist, as the runtime streams it) ----

const IpamSchema = z.looseObject({
  type: z.string().min(1),
  /** meshd IPAM: the pod CIDR this node allocates from. */
  subnet: z.string().optional(),
  /** meshd IPAM: the router address pods use as gateway (default: first host of subnet). */
  gateway: z.string().optional(),
  /** meshd IPAM without a subnet yet: why the agent does not know the node's pod CIDR (ADD is retried by the runtime). */
  pending: z.string().optional(),
});

const AttachmentSchema = z.looseObject({ containerID: z.string(), ifname: z.string() });

export const NetConfSchema = z.looseObject({
  cniVersion: z.string().min(1),
  name: z.string().min(1),
  type: z.string().min(1),
  prevResult: ResultSchema.optional(),
  ipam: IpamSchema.optional(),
  /** Top-level shorthand for ipam {type: meshd, subnet}. */
  podCIDR: z.string().optional(),
  /** The agent's endpoint API socket. */
  agentSocket: z.string().min(1).default(DEFAULT_ENDPOINT_SOCKET),
  /** Where IPAM reservations and attachment records live. */
  stateDir: z.string().min(1).default('/var/lib/meshd/cni'),
  mtu: z.number().int().min(68).max(65535).optional(),
  /**
   * none: meshd-cni is the primary plugin (creates the veth, assigns
   * addresses). generic-veth: a primary plugin ran before it (prevResult
   * holds its veth and addresses) and meshd-cni only registers the endpoint.
   */
  chainingMode: z.enum(['none', 'generic-veth']).default('none'),
  'cni.dev/valid-attachments': z.array(AttachmentSchema).optional(),
  'cni.dev/attachments': z.array(AttachmentSchema).optional(),
});
export type NetConf = z.infer<typeof NetConfSchema> & { cniVersion: CniVersion };

/** Parses and validates stdin. Throws CniError 6 (decode), 1 (version) or 7 (config). */
export function parseNetConf(text: string): NetConf {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new CniError(CniCode.DECODE_FAILURE, 'MESHD_CNI_BAD_JSON', `network configuration on stdin is not valid JSON: ${why}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(CniCode.DECODE_FAILURE, 'MESHD_CNI_BAD_JSON', 'network configuration on stdin must be a JSON object');
  }
  const version: unknown = 'cniVersion' in raw ? raw.cniVersion : undefined;
  if (typeof version !== 'string') {
    throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_BAD_CONFIG', 'network configuration: field "cniVersion" is missing or not a string');
  }
  if (!isSupportedVersion(version)) {
    throw new CniError(
      CniCode.INCOMPATIBLE_VERSION,
      'MESHD_CNI_UNSUPPORTED_VERSION',
      `network configuration: cniVersion "${version}" is not supported by meshd-cni (supported: ${SUPPORTED_VERSIONS.join(', ')})`,
    );
  }
  const parsed = NetConfSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CniError(CniCode.INVALID_CONFIG, 'MESHD_CNI_BAD_CONFIG', `network configuration: ${describeIssues(parsed.error)}`);
  }
  return { ...parsed.data, cniVersion: version };
}

// ---- Environment ----

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'VERSION' | 'STATUS' | 'GC';
const COMMANDS: readonly CniCommand[] = ['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'];

export interface CniEnv {
  command: CniCommand;
  containerId: string;
  netns: string;
  ifname: string;
  /** CNI_ARGS as key/value pairs. */
  args: Record<string, string>;
  path: string[];
}

function isCommand(c: string): c is CniCommand {
  return (COMMANDS as readonly string[]).includes(c);
}

const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const IFNAME_BAD = /[/:\s]/;

/**
 * Reads the CNI_* variables. Which ones are required depends on the command:
 * ADD and CHECK need all of them; DEL may come without CNI_NETNS (the
 * namespace is already gone); VERSION, STATUS and GC need only CNI_COMMAND.
 */
export function parseEnv(env: NodeJS.ProcessEnv): CniEnv {
  const cmd = env.CNI_COMMAND ?? '';
  if (!isCommand(cmd)) {
    throw new CniError(
      CniCode.INVALID_ENV,
      'MESHD_CNI_BAD_ENV',
      `CNI_COMMAND "${cmd}" is not one of ${COMMANDS.join(', ')}`,
    );
  }
  const containerId = env.CNI_CONTAINERID ?? '';
  const netns = env.CNI_NETNS ?? '';
  const ifname = env.CNI_IFNAME ?? '';
  const attachment = cmd === 'ADD' || cmd === 'DEL' || cmd === 'CHECK';
  if (attachment) {
    if (!CONTAINER_ID.test(containerId)) {
      throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_CONTAINERID "${containerId}" is missing or not a valid container ID`);
    }
    if (ifname === '' || ifname.length > 15 || ifname === '.' || ifname === '..' || IFNAME_BAD.test(ifname)) {
      throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_IFNAME "${ifname}" is missing or not a valid interface name`);
    }
    if (cmd !== 'DEL' && netns === '') {
      throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_NETNS is required for ${cmd}`);
    }
  }
  const args: Record<string, string> = {};
  for (const pair of (env.CNI_ARGS ?? '').split(';')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) {
      throw new CniError(CniCode.INVALID_ENV, 'MESHD_CNI_BAD_ENV', `CNI_ARGS: "${pair}" is not KEY=VALUE`);
    }
    args[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  const path = (env.CNI_PATH ?? '').split(':').filter((p) => p !== '');
  return { command: cmd, containerId, netns, ifname, args, path };
}
