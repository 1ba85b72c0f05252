/**
 * Secrets → the data TLS interception needs ("namespace/name" → key → PEM),
 * handed to the proxy on every reconcile (ProxyManager.apply's `secrets`,
 * checked and turned into SDS resources by src/proxy/sds.ts). A changed
 * Secret is a new SDS version: Envoy rotates the certificate without a
 * listener change.
 *
 *   const secrets = new SecretSubscriber();   // the agent reconciles after every batch of events
 *   proxy.apply({ endpoints, identityIps, secrets: secrets.data() });
 */
import { secretData } from '../k8s/secret.js';
import type { SecretData } from '../proxy/sds.js';
import type { ResourceEvent, ResourceSubscriber } from './resource-source.js';

export class SecretSubscriber implements ResourceSubscriber {
  readonly kinds = ['Secret'] as const;
  private readonly secrets = new Map<string, Record<string, string>>();

  apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    if (o.kind !== 'Secret') return Promise.resolve();
    const key = `${o.metadata.namespace ?? 'default'}/${o.metadata.name}`;
    if (ev.type === 'delete') this.secrets.delete(key);
    else this.secrets.set(key, secretData(o));
    return Promise.resolve();
  }

  data(): SecretData {
    return this.secrets;
  }
}
