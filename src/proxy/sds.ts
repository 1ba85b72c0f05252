/**
 * The certificates of TLS interception (terminatingTLS / originatingTLS) as
 * SDS resources (`type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret`,
 * served by xds/ over ADS). Listeners and clusters name a secret
 * (sdsSecretConfig); its content travels separately, so a rotated certificate
 * is a new SDS version and Envoy swaps it without touching the listener.
 *
 * Secret data comes from the caller ("namespace/name" → key → PEM text: a
 * Kubernetes Secret's data, decoded). Every referenced secret and key must be
 * there and parse (X.509 certificate chain, private key, CA bundle); otherwise
 * buildSdsSecrets throws TlsSecretError naming the reference and the policies
 * that use it, and nothing is published: the previous configuration stays.
 *
 *   const resources = buildSdsSecrets(out.secretRefs, secrets);
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { TlsContextRef } from '../policy/types.js';
import { MeshdError } from '../util/errors.js';

type Json = Record<string, unknown>;

/** Secret data by "namespace/name", then key (PEM text). */
export type SecretData = ReadonlyMap<string, Readonly<Record<string, string>>>;

export interface SecretRef {
  /** The SDS resource name (certificateSecretName / caSecretName). */
  name: string;
  use: 'certificate' | 'ca';
  ref: TlsContextRef;
  /** The policies whose rules name it, for the error. */
  policies: string[];
  /** The policy field it comes from. */
  field: 'terminatingTLS' | 'originatingTLS';
}

export type TlsSecretErrorCode = 'MESHD_PROXY_SECRET_MISSING' | 'MESHD_PROXY_SECRET_INVALID';

export class TlsSecretError extends MeshdError {
  constructor(
    code: TlsSecretErrorCode,
    message: string,
    readonly secret: string,
    readonly policies: string[],
    cause?: unknown,
  ) {
    super(code, message, { kind: code === 'MESHD_PROXY_SECRET_MISSING' ? 'not-found' : 'invalid', cause });
  }
}

export function certificateSecretName(ref: TlsContextRef): string {
  return `meshd-cert/${ref.secret}/${ref.certificate}/${ref.privateKey}`;
}

export function caSecretName(ref: TlsContextRef): string {
  return `meshd-ca/${ref.secret}/${ref.trustedCA}`;
}

/** An SdsSecretConfig fetching `name` over the ADS stream. */
export function sdsSecretConfig(name: string): Json {
  return { name, sds_config: { ads: {}, resource_api_version: 'V3' } };
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function checkCertificates(pem: string): void {
  const blocks = pem.match(PEM_CERT) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate');
  for (const b of blocks) new X509Certificate(b);
}

/** The SDS resources for `refs`, checked against `data`; throws TlsSecretError on the first bad one. */
export function buildSdsSecrets(refs: readonly SecretRef[], data: SecretData): Json[] {
  const out = new Map<string, Json>();
  for (const r of refs) {
    if (out.has(r.name)) continue;
    out.set(r.name, buildSdsSecret(r, data));
  }
  return [...out.values()];
}

export interface ResolvedSecrets {
  /** The SDS resources to publish: each referenced secret checked, or its last good version. */
  secrets: Json[];
  /** SDS names with no usable version at all: the chains that name them must be left out. */
  unusable: Set<string>;
  /** One per bad reference (missing, no such key, not PEM), whether its last good version stands in or not. */
  problems: TlsSecretError[];
}

/**
 * Like buildSdsSecrets, but one bad Secret costs only what names it: a Secret
 * that breaks (deleted, a rotation to something that is not PEM) keeps its
 * last good version (`previous`, what Envoy ACKed last), so the connections it
 * serves carry on as before; a reference that never had a good version is
 * `unusable` and its chains are left out (those connections fail closed).
 * Every bad reference is in `problems`.
 */
export function resolveSdsSecrets(refs: readonly SecretRef[], data: SecretData, previous: readonly Json[]): ResolvedSecrets {
  const before = new Map(previous.map((p) => [p.name, p]));
  const out = new Map<string, Json>();
  const unusable = new Set<string>();
  const problems: TlsSecretError[] = [];
  for (const r of refs) {
    if (out.has(r.name) || unusable.has(r.name)) continue;
    try {
      out.set(r.name, buildSdsSecret(r, data));
    } catch (e) {
      if (!(e instanceof TlsSecretError)) throw e;
      problems.push(e);
      const last = before.get(r.name);
      if (last) out.set(r.name, last);
      else unusable.add(r.name);
    }
  }
  return { secrets: [...out.values()], unusable, problems };
}

function buildSdsSecret(r: SecretRef, data: SecretData): Json {
  const where = `${r.field}.secret ${r.ref.secret} (policies ${r.policies.join(', ')})`;
  const secret = data.get(r.ref.secret);
  if (!secret) throw new TlsSecretError('MESHD_PROXY_SECRET_MISSING', `${where}: no such Secret`, r.ref.secret, r.policies);
  const keys = r.use === 'certificate' ? [r.ref.certificate, r.ref.privateKey] : [r.ref.trustedCA];
  for (const k of keys) {
    if (typeof secret[k] !== 'string' || secret[k] === '') throw new TlsSecretError('MESHD_PROXY_SECRET_MISSING', `${where}: the Secret has no key "${k}"`, r.ref.secret, r.policies);
  }
  const pem = (k: string): string => secret[k] ?? '';
  try {
    if (r.use === 'certificate') {
      checkCertificates(pem(r.ref.certificate));
      createPrivateKey(pem(r.ref.privateKey));
    } else checkCertificates(pem(r.ref.trustedCA));
  } catch (e) {
    const what = r.use === 'certificate' ? `"${r.ref.certificate}"/"${r.ref.privateKey}"` : `"${r.ref.trustedCA}"`;
    throw new TlsSecretError('MESHD_PROXY_SECRET_INVALID', `${where}: ${what} is not a valid PEM ${r.use === 'certificate' ? 'certificate and key' : 'CA bundle'}: ${e instanceof Error ? e.message : String(e)}`, r.ref.secret, r.policies, e);
  }
  const resource: Json =
    r.use === 'certificate'
      ? { name: r.name, tls_certificate: { certificate_chain: { inline_string: pem(r.ref.certificate) }, private_key: { inline_string: pem(r.ref.privateKey) } } }
      : { name: r.name, validation_context: { trusted_ca: { inline_string: pem(r.ref.trustedCA) } } };
  return { '@type': 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret', ...resource };
}

/**
 * `out` without what names an unusable SDS secret: the clusters that validate with it, the filter
 * chains that terminate with it or route to such a cluster, and listeners left without a chain.
 */
export function withoutUnusable<T extends { listeners: Json[]; clusters: Json[] }>(out: T, unusable: ReadonlySet<string>): T {
  if (unusable.size === 0) return out;
  const mentions = (x: unknown, names: ReadonlySet<string>): boolean => {
    const text = JSON.stringify(x);
    for (const n of names) if (text.includes(JSON.stringify(n))) return true;
    return false;
  };
  const droppedClusters = new Set(out.clusters.filter((c) => mentions(c, unusable)).map((c) => String(c.name)));
  const gone = new Set([...unusable, ...droppedClusters]);
  const listeners = out.listeners
    .map((l) => (Array.isArray(l.filter_chains) ? { ...l, filter_chains: l.filter_chains.filter((c: unknown) => !mentions(c, gone)) } : l))
    .filter((l) => !Array.isArray(l.filter_chains) || l.filter_chains.length > 0 || l.default_filter_chain !== undefined);
  return { ...out, listeners, clusters: out.clusters.filter((c) => !droppedClusters.has(String(c.name))) };
}
