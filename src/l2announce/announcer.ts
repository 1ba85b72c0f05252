/**
 * L2 announcements on one node: for every Service this node is a candidate
 * for (selection.ts), it competes for the Service's Lease
 * (`cilium-l2announce-<namespace>-<name>`); while it holds it, the node
 * answers ARP / neighbour solicitations for the Service's addresses on the
 * selected interfaces (host-net.ts) and sends a gratuitous ARP (IPv6: an
 * unsolicited neighbour advertisement) when it takes an address over. One node per Service answers, whatever the number of
 * candidates; when the holder goes, its Lease lapses after leaseDuration and
 * another candidate takes over.
 *
 * Every `retryMs` each Lease is renewed or tried (LeaseElector); the set of
 * Leases follows the policies, Services and this node's labels, read through
 * reflectors. A Service that appears is acted on in one pass: its Lease is
 * tried at once (created without a read when new), and when won its
 * addresses go on the interfaces in the same pass (one `ip` process for the
 * node's state, one for all the addresses added). Addresses of announced Services that this node does not hold
 * (left from before a restart) are removed, so a node answers only for what
 * it holds.
 *
 *   const l2 = new L2Announcer({ client, nodeName, namespace: 'kube-system', net: new IpHostNet(), leaseDurationMs: 15_000, retryMs: 2_000 });
 *   l2.start(); … l2.held();   // ['default/web']
 *   await l2.stop();            // gives the Leases up and withdraws the addresses
 */
import { z } from 'zod';
import { ciliumL2AnnouncementPolicy, L2_POLICIES_PATH, type CiliumL2AnnouncementPolicy } from '../k8s/cilium-l2-announcement-policy.js';
import { KubeApiError, type KubeClient } from '../k8s/client.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { parseWith } from '../k8s/problem.js';
import { Collection } from '../lbipam/collection.js';
import { LbServiceSchema, type LbService } from '../lbipam/lb-service.js';
import type { Logger } from '../util/log.js';
import type { HostNet } from './host-net.js';
import { candidates, leaseName, type Candidate } from './selection.js';

export interface L2AnnouncerOptions {
  client: KubeClient;
  nodeName: string;
  /** Namespace of the per-Service Leases. */
  namespace: string;
  net: HostNet;
  /** l2announcements.leaseDuration (default 15 s). */
  leaseDurationMs?: number;
  /** l2announcements.leaseRetryPeriod (default 2 s). */
  retryMs?: number;
  /** Changes arriving within this long are applied together (default 10 ms). */
  batchMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  log?: Logger;
}

const NodeSchema = z.object({ metadata: z.object({ labels: z.record(z.string(), z.string()).default({}) }) });

interface Contest {
  candidate: Candidate;
  lease: LeaseElector;
}

export class L2Announcer {
  private readonly policies: Collection<CiliumL2AnnouncementPolicy>;
  private readonly services: Collection<LbService>;
  private started = false;
  private readonly contests = new Map<string, Contest>();
  /** "ifname ip" of every address this announcer put on an interface. */
  private readonly placed = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Gratuitous ARPs / neighbour advertisements still being sent (stop waits for them). */
  private readonly announcing = new Set<Promise<void>>();
  /** When each address was last taken over (gratuitous ARP sent), for measurements. */
  readonly takeovers: Array<{ service: string; ip: string; ifname: string; at: number }> = [];

  constructor(private readonly o: L2AnnouncerOptions) {
    const tuning = { client: o.client, onChange: () => this.schedule(), ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs ? { missingRecheckMs: o.missingRecheckMs } : {}), ...(o.log ? { log: o.log } : {}) };
    this.policies = new Collection({
      ...tuning,
      what: 'CiliumL2AnnouncementPolicy',
      path: L2_POLICIES_PATH,
      scope: 'cluster',
      // List items of a custom resource may come without kind and apiVersion.
      parse: (raw) => ciliumL2AnnouncementPolicy.parse(typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? { kind: 'CiliumL2AnnouncementPolicy', apiVersion: 'cilium.io/v2alpha1', ...raw } : raw),
    });
    this.services = new Collection({ ...tuning, what: 'Service', path: '/api/v1/services', scope: 'namespaced', parse: (raw) => parseWith(LbServiceSchema, raw) });
  }

  /** Services whose Lease this node holds. */
  held(): string[] {
    return [...this.contests].filter(([, c]) => c.lease.isLeader()).map(([k]) => k).sort();
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.policies.start();
    this.services.start();
  }

  /**
   * Stops announcing: withdraws every address it placed, and gives the
   * Leases up so another node takes over at its next try (`release: false`
   * leaves them to lapse, as a node that died would). Idempotent.
   */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([this.policies.stop(), this.services.stop()]);
    await this.chain;
    await Promise.all(this.announcing);
    await Promise.all([...this.contests.values()].map((c) => c.lease.stop(opts)));
    this.contests.clear();
    for (const p of [...this.placed]) {
      const [ifname = '', ip = ''] = p.split(' ');
      await this.o.net.remove(ifname, ip).catch((e: unknown) => this.o.log?.warn('L2 announcements: withdrawing an address failed', { ifname, ip, error: String(e) }));
      this.placed.delete(p);
    }
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.apply()).catch((e: unknown) => {
        this.o.log?.warn('L2 announcements: apply failed; retried', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) });
        setTimeout(() => this.schedule(), this.o.retryMs ?? 2_000);
      });
    }, this.o.batchMs ?? 10);
  }

  private async nodeLabels(): Promise<Record<string, string>> {
    try {
      const r = NodeSchema.safeParse(await this.o.client.getJson(`/api/v1/nodes/${this.o.nodeName}`));
      return r.success ? r.data.metadata.labels : {};
    } catch (e) {
      if (isKubeStatus(e, 404)) return {};
      throw e;
    }
  }

  /** Brings the Leases competed for and the addresses placed in line with what is wanted now. */
  private async apply(): Promise<void> {
    if (this.stopped || !this.policies.synced || !this.services.synced) return;
    const policies = [...this.policies.items.values()];
    const labels = policies.some((p) => p.spec?.nodeSelector) ? await this.nodeLabels() : {};
    const host = await this.o.net.read();
    const want = candidates({ policies, services: [...this.services.items.values()], nodeLabels: labels, interfaces: host.interfaces.map((i) => i.name) });
    for (const [key, c] of this.contests) {
      if (want.has(key)) continue;
      this.contests.delete(key);
      await c.lease.stop();
    }
    const started: LeaseElector[] = [];
    for (const [key, candidate] of want) {
      const have = this.contests.get(key);
      if (have) {
        have.candidate = candidate;
        continue;
      }
      const lease = new LeaseElector({
        client: this.o.client,
        holder: this.o.nodeName,
        namespace: this.o.namespace,
        name: leaseName(candidate),
        ...(this.o.leaseDurationMs !== undefined ? { leaseDurationMs: this.o.leaseDurationMs } : {}),
        ...(this.o.retryMs !== undefined ? { retryMs: this.o.retryMs } : {}),
      });
      lease.onLeadership(() => this.schedule());
      this.contests.set(key, { candidate, lease });
      lease.start();
      started.push(lease);
    }
    // The first tries of new Leases (one request each, together): what they win is announced in this pass, not the next.
    await Promise.all(started.map((l) => l.settled()));
    // Addresses: those of held Services on their interfaces; anything else of an announced Service goes.
    const wanted = new Map<string, { service: string; ifname: string; ip: string }>();
    for (const [key, c] of this.contests) {
      if (!c.lease.isLeader()) continue;
      for (const ip of c.candidate.ips) for (const ifname of c.candidate.interfaces) wanted.set(`${ifname} ${ip}`, { service: key, ifname, ip });
    }
    const announcable = new Set([...want.values()].flatMap((c) => c.ips));
    const present = host.announced;
    for (const a of present) {
      const k = `${a.ifname} ${a.ip}`;
      if (wanted.has(k) || (!this.placed.has(k) && !announcable.has(a.ip))) continue;
      await this.o.net.remove(a.ifname, a.ip);
      this.placed.delete(k);
      this.o.log?.info('L2 announcements: no longer answering', { ifname: a.ifname, ip: a.ip });
    }
    for (const k of [...this.placed]) if (!wanted.has(k) && !present.some((a) => `${a.ifname} ${a.ip}` === k)) this.placed.delete(k);
    const adding = [...wanted].filter(([k]) => !(this.placed.has(k) && present.some((a) => `${a.ifname} ${a.ip}` === k)));
    await this.o.net.add(adding.map(([, w]) => w));
    for (const [k, w] of adding) {
      this.placed.add(k);
      this.takeovers.push({ ...w, at: Date.now() });
      this.o.log?.info('L2 announcements: answering', { service: w.service, ifname: w.ifname, ip: w.ip });
      // Neighbours that resolved the address to the previous holder learn the new one now, not when their entry expires.
      // Not awaited: arping waits a second after its one packet, and the next address must not wait for it.
      const announcing = this.o.net
        .announce(w.ifname, w.ip)
        .catch((e: unknown) => this.o.log?.warn('L2 announcements: gratuitous ARP / unsolicited neighbour advertisement failed; neighbours learn the move when they ask again', { ifname: w.ifname, ip: w.ip, error: String(e) }))
        .finally(() => this.announcing.delete(announcing));
      this.announcing.add(announcing);
    }
  }
}
