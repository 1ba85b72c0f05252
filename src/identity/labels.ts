/**
 * Security labels as Cilium models them: `source:key=value`. The source says
 * where a label came from (`k8s`, `reserved`, `cidr`, …); selectors may name a
 * source (`k8s:app`) or not (`app`, same as `any:app`), in which case labels
 * from every source match.
 *
 *   const set = LabelSet.from([{ source: 'k8s', key: 'app', value: 'web' }]);
 *   set.key   // "k8s:app=web" — canonical, order-independent
 */

export interface Label {
  readonly source: string;
  readonly key: string;
  readonly value: string;
}

/** Sources a selector key may be prefixed with. */
export const LABEL_SOURCES = ['k8s', 'any', 'reserved', 'cidr', 'fqdn', 'container', 'unspec'] as const;

/** The label key Kubernetes pods carry for their namespace (selectable as `k8s:io.kubernetes.pod.namespace`). */
export const POD_NAMESPACE_LABEL = 'io.kubernetes.pod.namespace';
/** Namespace labels are copied onto pods under this prefix so namespaceSelector works on identities. */
export const NAMESPACE_LABELS_PREFIX = 'io.cilium.k8s.namespace.labels.';
export const SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
export const CLUSTER_LABEL = 'io.cilium.k8s.policy.cluster';

/** Splits "k8s:app" into source and key; a key without a known source prefix has source "any". */
export function parseSelectorKey(raw: string): { source: string; key: string } {
  const i = raw.indexOf(':');
  if (i > 0) {
    const src = raw.slice(0, i);
    if ((LABEL_SOURCES as readonly string[]).includes(src)) return { source: src, key: raw.slice(i + 1) };
  }
  return { source: 'any', key: raw };
}

export function formatLabel(l: Label): string {
  return l.value === '' ? `${l.source}:${l.key}` : `${l.source}:${l.key}=${l.value}`;
}

/** An immutable set of labels with a canonical string key and an index by key. */
export class LabelSet {
  readonly labels: readonly Label[];
  /** Canonical form: sorted `source:key=value` joined by ";". Equal sets have equal keys. */
  readonly key: string;
  private readonly byKey = new Map<string, Label[]>();

  private constructor(labels: Label[]) {
    const uniq = new Map<string, Label>();
    for (const l of labels) uniq.set(`${l.source}:${l.key}`, l);
    this.labels = [...uniq.values()].sort((a, b) => formatLabel(a).localeCompare(formatLabel(b)));
    this.key = this.labels.map(formatLabel).join(';');
    for (const l of this.labels) {
      const list = this.byKey.get(l.key);
      if (list) list.push(l);
      else this.byKey.set(l.key, [l]);
    }
  }

  static from(labels: Iterable<Label>): LabelSet {
    return new LabelSet([...labels]);
  }

  /** Labels with this key from the given source ("any" = every source). */
  get(source: string, key: string): Label[] {
    const list = this.byKey.get(key);
    if (!list) return [];
    return source === 'any' ? list : list.filter((l) => l.source === source);
  }

  has(source: string, key: string): boolean {
    return this.get(source, key).length > 0;
  }

  toStrings(): string[] {
    return this.labels.map(formatLabel);
  }
}

/** Labels of a Kubernetes pod as Cilium derives them (pod labels, namespace, namespace labels, service account). */
export function podLabels(opts: {
  namespace: string;
  labels?: Record<string, string>;
  namespaceLabels?: Record<string, string>;
  serviceAccount?: string;
  cluster?: string;
}): LabelSet {
  const out: Label[] = [];
  for (const [key, value] of Object.entries(opts.labels ?? {})) out.push({ source: 'k8s', key, value });
  out.push({ source: 'k8s', key: POD_NAMESPACE_LABEL, value: opts.namespace });
  for (const [key, value] of Object.entries(opts.namespaceLabels ?? {})) {
    out.push({ source: 'k8s', key: `${NAMESPACE_LABELS_PREFIX}${key}`, value });
  }
  if (opts.serviceAccount !== undefined) out.push({ source: 'k8s', key: SERVICE_ACCOUNT_LABEL, value: opts.serviceAccount });
  out.push({ source: 'k8s', key: CLUSTER_LABEL, value: opts.cluster ?? 'default' });
  return LabelSet.from(out);
}
