/**
 * The CustomResourceDefinitions meshd reads (cilium.io/v2
 * CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy): built from the
 * same zod schemas the agent parses policies with (src/policy/api/schema.ts),
 * so the API server refuses a wrongly typed field with its path before any
 * agent sees it, and the CRD cannot drift from what meshd accepts. The
 * manifests under install/crds/ are this module's output
 * (scripts/gen-crds.mjs); a unit test keeps them equal.
 *
 *   const crds = policyCrds();                        // the objects, as shipped
 *   await registerCrds({ kubeConfig, log });          // create, or update an older version, then wait for Established
 *   await new CrdRegistrar({ kubeConfig, log }).start(); // the agent's way: bounded wait, retries in the background
 *
 * zod → Kubernetes: `z.toJSONSchema` gives JSON Schema 2020-12; Kubernetes
 * wants a *structural* OpenAPI v3 schema (every node typed, no anyOf/oneOf
 * deciding types, no $ref, `additionalProperties` only for maps). The
 * conversion handles exactly the constructs the policy schemas use and
 * throws MESHD_K8S_CRD_SCHEMA_UNSUPPORTED for anything else, so a schema
 * change that cannot be expressed fails the generator, not a cluster.
 * Semantic checks (regexes, CIDRs, named ports) stay in the agent, which
 * reports them in the policy's status (src/k8s/policy-status.ts).
 */
import { ApiException, ApiextensionsV1Api, loadYaml, type KubeConfig, type V1CustomResourceDefinition } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { z } from 'zod';
import { ruleSpec } from '../policy/api/schema.js';
import { CiliumCidrGroupSchema } from './cilium-cidr-group.js';
import { MeshdError, type ErrorKind } from '../util/errors.js';
import type { Logger } from '../util/log.js';

/**
 * Bumped whenever the generated CRDs change. An agent updates a CRD whose
 * label carries a lower version (or none) and leaves a newer one alone, so
 * during a rolling upgrade old agents never downgrade the schema.
 */
export const CRD_SCHEMA_VERSION = 3;
export const CRD_SCHEMA_VERSION_LABEL = 'meshd.io/crd-schema-version';

/** The subset of OpenAPI v3 a structural CRD schema is built from. */
export interface StructuralSchema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  format?: string;
  description?: string;
  enum?: string[];
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  minItems?: number;
  required?: string[];
  properties?: Record<string, StructuralSchema>;
  additionalProperties?: StructuralSchema;
  items?: StructuralSchema;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-preserve-unknown-fields'?: true;
}

export type CrdErrorCode =
  /** A zod schema uses a construct that has no structural OpenAPI form. */
  | 'MESHD_K8S_CRD_SCHEMA_UNSUPPORTED'
  /** The API server refused to create or update a CRD (RBAC, an invalid CRD). */
  | 'MESHD_K8S_CRD_REGISTER_FAILED'
  /** The API server could not be reached while registering. */
  | 'MESHD_K8S_CRD_UNREACHABLE';

export class CrdError extends MeshdError {
  declare readonly code: CrdErrorCode;
  /** MESHD_K8S_CRD_SCHEMA_UNSUPPORTED: the schema field at fault (`spec.ingress[].toPorts`). */
  readonly field: string | undefined;
  constructor(code: CrdErrorCode, message: string, opts: { kind?: ErrorKind; cause?: unknown; field?: string } = {}) {
    super(code, message, { kind: opts.kind ?? (code === 'MESHD_K8S_CRD_UNREACHABLE' ? 'unavailable' : 'failed'), cause: opts.cause });
    this.field = opts.field;
  }
}

/** JSON Schema as z.toJSONSchema emits it, read without casts. */
const jsonSchema: z.ZodType<JsonSchemaNode> = z.lazy(() =>
  z.looseObject({
    type: z.union([z.string(), z.array(z.string())]).optional(),
    description: z.string().optional(),
    enum: z.array(z.unknown()).optional(),
    const: z.unknown().optional(),
    minLength: z.number().optional(),
    maxLength: z.number().optional(),
    pattern: z.string().optional(),
    format: z.string().optional(),
    minimum: z.number().optional(),
    maximum: z.number().optional(),
    minItems: z.number().optional(),
    required: z.array(z.string()).optional(),
    properties: z.record(z.string(), jsonSchema).optional(),
    additionalProperties: z.union([z.boolean(), jsonSchema]).optional(),
    propertyNames: z.unknown().optional(),
    items: jsonSchema.optional(),
    anyOf: z.array(jsonSchema).optional(),
    $ref: z.string().optional(),
    $schema: z.string().optional(),
  }),
);
interface JsonSchemaNode {
  type?: string | string[] | undefined;
  description?: string | undefined;
  enum?: unknown[] | undefined;
  const?: unknown;
  minLength?: number | undefined;
  maxLength?: number | undefined;
  pattern?: string | undefined;
  format?: string | undefined;
  minimum?: number | undefined;
  maximum?: number | undefined;
  minItems?: number | undefined;
  required?: string[] | undefined;
  properties?: Record<string, JsonSchemaNode> | undefined;
  additionalProperties?: boolean | JsonSchemaNode | undefined;
  propertyNames?: unknown;
  items?: JsonSchemaNode | undefined;
  anyOf?: JsonSchemaNode[] | undefined;
  $ref?: string | undefined;
  $schema?: string | undefined;
  [k: string]: unknown;
}

const HANDLED = new Set(['type', 'description', 'enum', 'minLength', 'maxLength', 'pattern', 'format', 'minimum', 'maximum', 'minItems', 'required', 'properties', 'additionalProperties', 'propertyNames', 'items', 'anyOf', '$schema']);

function unsupported(path: string, what: string): never {
  throw new CrdError('MESHD_K8S_CRD_SCHEMA_UNSUPPORTED', `${path || '(root)'}: ${what} has no structural OpenAPI form`, { field: path });
}

/** zod's integer bounds are JavaScript's safe range, which says nothing for a CRD. */
const bound = (n: number | undefined): number | undefined => (n === undefined || Math.abs(n) >= Number.MAX_SAFE_INTEGER ? undefined : n);

/** One JSON Schema node → its structural OpenAPI v3 form (key order fixed, so the output is stable). */
export function toStructural(node: JsonSchemaNode, path = ''): StructuralSchema {
  for (const k of Object.keys(node)) if (!HANDLED.has(k)) unsupported(path, `"${k}"`);
  const out: StructuralSchema = {};
  if (node.description !== undefined) out.description = node.description;
  if (node.anyOf) {
    const types = new Set(node.anyOf.map((a) => a.type));
    if (node.anyOf.length === 2 && types.has('string') && (types.has('integer') || types.has('number'))) return { ...out, 'x-kubernetes-int-or-string': true };
    unsupported(path, 'anyOf other than string|integer');
  }
  switch (node.type) {
    case undefined:
      // z.unknown(): kept as written, checked by the agent.
      return { ...out, 'x-kubernetes-preserve-unknown-fields': true };
    case 'string':
      out.type = 'string';
      if (node.enum) out.enum = node.enum.map((v) => (typeof v === 'string' ? v : unsupported(path, 'a non-string enum value')));
      if (node.format !== undefined) out.format = node.format;
      if (node.pattern !== undefined) out.pattern = node.pattern;
      if (node.minLength !== undefined) out.minLength = node.minLength;
      if (node.maxLength !== undefined) out.maxLength = node.maxLength;
      return out;
    case 'integer':
    case 'number': {
      out.type = node.type;
      const min = bound(node.minimum);
      const max = bound(node.maximum);
      if (min !== undefined) out.minimum = min;
      if (max !== undefined) out.maximum = max;
      return out;
    }
    case 'boolean':
      out.type = 'boolean';
      return out;
    case 'array':
      out.type = 'array';
      if (!node.items) unsupported(path, 'an array without items');
      if (node.minItems !== undefined) out.minItems = node.minItems;
      out.items = toStructural(node.items, `${path}[]`);
      return out;
    case 'object': {
      out.type = 'object';
      const ap = node.additionalProperties;
      if (node.properties && Object.keys(node.properties).length > 0) {
        if (typeof ap === 'object') unsupported(path, 'an object with both properties and a map part');
        if (node.required?.length) out.required = [...node.required];
        out.properties = Object.fromEntries(Object.entries(node.properties).map(([k, v]) => [k, toStructural(v, path ? `${path}.${k}` : k)]));
        return out;
      }
      if (typeof ap === 'object') {
        out.additionalProperties = toStructural(ap, `${path}{}`);
        return out;
      }
      return { ...out, 'x-kubernetes-preserve-unknown-fields': true };
    }
    default:
      return unsupported(path, `type ${JSON.stringify(node.type)}`);
  }
}

/** A zod schema (as users write the object: input side) → structural schema. */
export function structuralFromZod(schema: z.ZodType, path = ''): StructuralSchema {
  const raw = jsonSchema.parse(z.toJSONSchema(schema, { io: 'input', reused: 'inline', cycles: 'throw', unrepresentable: 'throw' }));
  if (raw.$ref !== undefined) unsupported(path, '$ref');
  return toStructural(raw, path);
}

/**
 * One node's entry in a policy's status (`status.nodes[<node>]`), the shape
 * Cilium's agents wrote per node, plus the generation it describes and, when
 * rejected, each problem with its field path.
 */
const nodeStatusSchema: StructuralSchema = {
  type: 'object',
  properties: {
    ok: { type: 'boolean', description: 'The node accepted this generation of the policy.' },
    enforcing: { type: 'boolean', description: 'The node enforces the policy (an older generation when this one was rejected).' },
    error: { type: 'string', description: 'Why this generation was rejected, when it was.' },
    observedGeneration: { type: 'integer', description: 'metadata.generation this entry describes.' },
    lastUpdated: { type: 'string', format: 'date-time' },
    problems: {
      type: 'array',
      items: {
        type: 'object',
        required: ['path', 'message'],
        properties: { path: { type: 'string' }, code: { type: 'string' }, message: { type: 'string' } },
      },
    },
  },
};

function policyOpenApi(): StructuralSchema {
  const rule = structuralFromZod(ruleSpec, 'spec');
  return {
    type: 'object',
    required: ['metadata'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: rule,
      specs: { type: 'array', items: rule },
      status: {
        type: 'object',
        properties: {
          nodes: { type: 'object', description: 'Per node: whether its agent accepted and enforces the policy.', additionalProperties: nodeStatusSchema },
          conditions: {
            type: 'array',
            description: "Cluster-wide conditions; type Valid is kept by one agent (the holder of the node housekeeping Lease), as Cilium's operator keeps it.",
            items: {
              type: 'object',
              required: ['type', 'status'],
              properties: {
                type: { type: 'string', description: 'The condition type (Valid).' },
                status: { type: 'string', description: 'True, False or Unknown.' },
                lastTransitionTime: { type: 'string', format: 'date-time', description: 'When the status last changed.' },
                reason: { type: 'string', description: "The reason for the condition's last transition." },
                message: { type: 'string', description: 'Why: the problems with their field paths when False.' },
              },
            },
          },
        },
      },
    },
  };
}

export interface CrdObject {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; labels: Record<string, string> };
  spec: {
    group: string;
    names: { kind: string; listKind: string; plural: string; singular: string; shortNames: string[]; categories: string[] };
    scope: 'Namespaced' | 'Cluster';
    versions: Array<{
      name: string;
      served: boolean;
      storage: boolean;
      /** An older version still served (CiliumCIDRGroup v2alpha1). */
      deprecated?: boolean;
      /** The status subresource (policies: each node patches its own status entry); absent where status is written with the object. */
      subresources?: { status: Record<string, never> };
      additionalPrinterColumns: Array<{ name: string; type: string; jsonPath: string; description?: string }>;
      schema: { openAPIV3Schema: StructuralSchema };
    }>;
  };
}

/** One CRD object of meshd's (policy or meshd.io kinds), labelled with the schema version the registrar compares. */
export function crdObject(d: {
  group: string;
  kind: string;
  plural: string;
  shortNames: string[];
  categories: string[];
  scope: 'Namespaced' | 'Cluster';
  version: string;
  statusSubresource: boolean;
  columns: CrdObject['spec']['versions'][number]['additionalPrinterColumns'];
  schema: StructuralSchema;
}): CrdObject {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${d.plural}.${d.group}`, labels: { [CRD_SCHEMA_VERSION_LABEL]: String(CRD_SCHEMA_VERSION) } },
    spec: {
      group: d.group,
      names: { kind: d.kind, listKind: `${d.kind}List`, plural: d.plural, singular: d.kind.toLowerCase(), shortNames: d.shortNames, categories: d.categories },
      scope: d.scope,
      versions: [
        {
          name: d.version,
          served: true,
          storage: true,
          ...(d.statusSubresource ? { subresources: { status: {} } } : {}),
          additionalPrinterColumns: d.columns,
          schema: { openAPIV3Schema: d.schema },
        },
      ],
    },
  };
}

const policyCrd = (kind: string, plural: string, shortName: string, scope: 'Namespaced' | 'Cluster', schema: StructuralSchema): CrdObject =>
  crdObject({
    group: 'cilium.io',
    kind,
    plural,
    shortNames: [shortName],
    categories: ['cilium', 'ciliumpolicy'],
    scope,
    version: 'v2',
    statusSubresource: true,
    // Cilium's columns: `kubectl get cnp` shows AGE and VALID.
    columns: [
      { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
      { name: 'Valid', type: 'string', jsonPath: ".status.conditions[?(@.type=='Valid')].status" },
    ],
    schema,
  });

/**
 * cilium.io CiliumCIDRGroup: v2 stored, v2alpha1 (the same shape, deprecated as in Cilium) still
 * served so that older manifests apply; no status subresource (nothing writes one).
 */
function cidrGroupCrd(): CrdObject {
  const schema: StructuralSchema = {
    type: 'object',
    required: ['spec'],
    properties: {
      apiVersion: { type: 'string' },
      kind: { type: 'string' },
      metadata: { type: 'object' },
      spec: structuralFromZod(CiliumCidrGroupSchema.shape.spec, 'spec'),
    },
  };
  const crd = crdObject({ group: 'cilium.io', kind: 'CiliumCIDRGroup', plural: 'ciliumcidrgroups', shortNames: ['ccg'], categories: ['cilium'], scope: 'Cluster', version: 'v2', statusSubresource: false, columns: [{ name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' }], schema });
  const v2 = crd.spec.versions[0];
  if (v2) crd.spec.versions.push({ ...v2, name: 'v2alpha1', storage: false, deprecated: true });
  return crd;
}

/** The CRDs meshd registers, in a fixed order (namespaced first). */
export function policyCrds(): CrdObject[] {
  const openApi = policyOpenApi();
  return [
    policyCrd('CiliumNetworkPolicy', 'ciliumnetworkpolicies', 'cnp', 'Namespaced', openApi),
    policyCrd('CiliumClusterwideNetworkPolicy', 'ciliumclusterwidenetworkpolicies', 'ccnp', 'Cluster', openApi),
    cidrGroupCrd(),
  ];
}

/** A CRD as shipped in install/crds/ (`<plural>.yaml`): a generated-file header, then the object. */
export function renderCrdYaml(crd: CrdObject): string {
  return renderCrdsYaml(
    [
      `${crd.spec.group}/${crd.spec.versions[0]?.name ?? ''} ${crd.spec.names.kind}, so that existing policies apply verbatim with kubectl apply.`,
      'Generated by scripts/gen-crds.mjs from the policy schemas in src/policy/api/schema.ts; do not edit.',
      'The agent registers it itself unless skipCRDCreation is set (docs/kubernetes.md).',
    ],
    [crd],
  );
}

/** The file name of a CRD under install/crds/. */
export const crdFileName = (crd: CrdObject): string => `${crd.spec.names.plural}.yaml`;

/** CRDs as one file under install/crds/: a comment header, then the objects. */
export function renderCrdsYaml(header: readonly string[], crds: readonly CrdObject[]): string {
  return `${header.map((l) => `# ${l}`.trimEnd()).join('\n')}\n${crds.map((c) => stringify(c, { lineWidth: 0, aliasDuplicateObjects: false })).join('---\n')}`;
}

export interface RegisterCrdsOptions {
  kubeConfig: KubeConfig;
  log?: Logger;
  crds?: CrdObject[];
  /** How long to wait for a created or updated CRD to be Established (default 20 s); the source copes with a late one. */
  establishTimeoutMs?: number;
}

export type CrdAction = 'created' | 'updated' | 'unchanged' | 'newer';

function fail(e: unknown, what: string): CrdError {
  if (e instanceof ApiException) {
    const status = typeof e.code === 'number' ? e.code : 0;
    const kind: ErrorKind = status === 403 || status === 401 ? 'failed' : status === 409 ? 'conflict' : status >= 500 ? 'unavailable' : 'failed';
    return new CrdError(status >= 500 ? 'MESHD_K8S_CRD_UNREACHABLE' : 'MESHD_K8S_CRD_REGISTER_FAILED', `${what}: the API server answered ${status}`, { kind, cause: e });
  }
  return new CrdError('MESHD_K8S_CRD_UNREACHABLE', `${what}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

const installedVersion = (crd: V1CustomResourceDefinition): number => {
  const v = Number(crd.metadata?.labels?.[CRD_SCHEMA_VERSION_LABEL] ?? '0');
  return Number.isInteger(v) ? v : 0;
};

const established = (crd: V1CustomResourceDefinition): boolean => (crd.status?.conditions ?? []).some((c) => c.type === 'Established' && c.status === 'True');

/**
 * Creates each CRD that is missing and replaces each whose schema version is
 * older than this agent's (as Cilium's agent and operator do), then waits
 * until the API server serves them. A newer CRD (a newer agent registered
 * it) is left alone. Throws CrdError: MESHD_K8S_CRD_UNREACHABLE when the API
 * server cannot be reached (the caller may go on: the source waits for
 * missing kinds), MESHD_K8S_CRD_REGISTER_FAILED when it refuses.
 */
export async function registerCrds(o: RegisterCrdsOptions): Promise<Record<string, CrdAction>> {
  const api = o.kubeConfig.makeApiClient(ApiextensionsV1Api);
  const result: Record<string, CrdAction> = {};
  const pending: string[] = [];
  for (const crd of o.crds ?? policyCrds()) {
    const name = crd.metadata.name;
    let current: V1CustomResourceDefinition | undefined;
    try {
      current = await api.readCustomResourceDefinition({ name });
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 404)) throw fail(e, `reading CRD ${name}`);
    }
    // The typed client serialises by its model's property names (`_enum`, `x_kubernetes_int_or_string`,
    // `x_kubernetes_preserve_unknown_fields`), so the wire form must first become the model, or those keys are dropped.
    const body = loadYaml<V1CustomResourceDefinition>(JSON.stringify(crd));
    if (current === undefined) {
      try {
        await api.createCustomResourceDefinition({ body });
        result[name] = 'created';
      } catch (e) {
        // Another agent created it between our read and our create (agents start together): theirs is the same CRD.
        if (!(e instanceof ApiException && e.code === 409)) throw fail(e, `creating CRD ${name}`);
        result[name] = 'unchanged';
      }
      pending.push(name);
      continue;
    }
    const have = installedVersion(current);
    if (have >= CRD_SCHEMA_VERSION) {
      result[name] = have > CRD_SCHEMA_VERSION ? 'newer' : 'unchanged';
      if (!established(current)) pending.push(name);
      continue;
    }
    try {
      await api.replaceCustomResourceDefinition({ name, body: { ...body, metadata: { ...body.metadata, resourceVersion: current.metadata?.resourceVersion } } });
      result[name] = 'updated';
    } catch (e) {
      if (!(e instanceof ApiException && e.code === 409)) throw fail(e, `updating CRD ${name} from schema version ${have}`);
      // Changed since our read: fine when another agent already brought it to (at least) our schema version.
      const now = await api.readCustomResourceDefinition({ name }).catch((re: unknown) => {
        throw fail(re, `reading CRD ${name}`);
      });
      if (installedVersion(now) < CRD_SCHEMA_VERSION) throw fail(e, `updating CRD ${name} from schema version ${have}`);
      result[name] = installedVersion(now) > CRD_SCHEMA_VERSION ? 'newer' : 'unchanged';
    }
    pending.push(name);
  }
  o.log?.info('CRDs registered', result);
  const deadline = Date.now() + (o.establishTimeoutMs ?? 20_000);
  for (const name of pending) {
    for (;;) {
      let crd: V1CustomResourceDefinition;
      try {
        crd = await api.readCustomResourceDefinition({ name });
      } catch (e) {
        throw fail(e, `reading CRD ${name}`);
      }
      if (established(crd)) break;
      if (Date.now() > deadline) {
        o.log?.warn('CRD not established yet; the source picks it up when it is', { crd: name });
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return result;
}

export interface CrdRegistrarOptions extends RegisterCrdsOptions {
  /** How long start() waits for the first attempt before going on without (default 10 s). */
  firstAttemptMs?: number;
  /** Retries after an unreachable API server or a refusal (default 1 s doubling to 60 s). */
  backoff?: { initialMs: number; maxMs: number };
}

/**
 * Registration as the agent runs it: start() waits for the first attempt, so
 * the source normally starts with the CRDs served, but not for long. When
 * the API server cannot be reached (or does not answer in time) start()
 * returns and registration goes on in the background with backoff, so an
 * agent restarted during an outage enforces from its local state at once
 * (the source picks the kinds up when they are served). A refusal at start
 * (RBAC) is thrown: the operator has to fix the role or set skipCRDCreation.
 */
export class CrdRegistrar {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private done = false;
  private failures = 0;

  constructor(private readonly o: CrdRegistrarOptions) {}

  /** Whether the CRDs are registered (created, updated or already current). */
  registered(): boolean {
    return this.done;
  }

  async start(): Promise<void> {
    let late: NodeJS.Timeout | undefined;
    const first = registerCrds(this.o).then(() => (this.done = true));
    const timeout = new Promise<'late'>((resolve) => (late = setTimeout(() => resolve('late'), this.o.firstAttemptMs ?? 10_000)));
    try {
      if ((await Promise.race([first, timeout])) === true) return;
      this.o.log?.warn('the API server has not answered the CRD registration yet; going on, it continues in the background');
      first.catch((e: unknown) => this.failed(e));
    } catch (e) {
      if (!(e instanceof CrdError) || e.code !== 'MESHD_K8S_CRD_UNREACHABLE') throw e;
      this.failed(e);
    } finally {
      clearTimeout(late);
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private failed(e: unknown): void {
    if (this.stopped) return;
    const b = this.o.backoff ?? { initialMs: 1_000, maxMs: 60_000 };
    const delay = Math.min(b.maxMs, b.initialMs * 2 ** this.failures++);
    this.o.log?.warn('cannot register the CRDs; will retry', { code: e instanceof CrdError ? e.code : undefined, err: e instanceof Error ? e.message : String(e), retryInMs: delay });
    this.timer = setTimeout(() => {
      registerCrds(this.o).then(
        () => {
          this.done = true;
          this.failures = 0;
        },
        (err: unknown) => this.failed(err),
      );
    }, delay);
    this.timer.unref();
  }
}
