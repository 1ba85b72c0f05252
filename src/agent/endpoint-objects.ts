/**
 * MeshdEndpoint objects in the agent (Kubernetes mode): this node's pods out
 * (endpoint-object-writer.ts), the other nodes' pods in (remote-endpoints.ts).
 * The agent hands over what both need once its parts exist (`attach`), tells
 * it after every mutation (`changed`), and shows `status()` in `meshd status`.
 *
 *   const objects = new EndpointObjects({ client, nodeName, checkIdentity: true });
 *   const agent = await Agent.start({ …, endpointObjects: objects });   // attach() waits for the first list
 *   objects.startWriting();
 *   …
 *   await objects.stop();
 */
import type { z } from 'zod';
import type { EndpointObjectsStatus } from '../api/status.js';
import type { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import { ReservedIdentity } from '../identity/reserved.js';
import { addressesOf, type EndpointObjectState } from '../k8s/meshd-endpoint.js';
import { backoffMs } from '../k8s/reflector.js';
import type { PolicyEngine } from '../policy/index.js';
import { EndpointObjectWriter, type DesiredEndpoint } from './endpoint-object-writer.js';
import { endpointIdOf, type EndpointRegistry } from './endpoint-registry.js';
import type { EndpointSubscriber } from './endpoint-subscriber.js';
import { RemoteEndpoints, type RemoteEndpointsOptions } from './remote-endpoints.js';

/** What the agent lends: its parts, its serial queue, and a reconcile that writes only once it runs. */
export interface EndpointObjectsContext {
  engine: PolicyEngine;
  registry: EndpointRegistry;
  subscriber: EndpointSubscriber;
  endpoints: EndpointManager;
  /** Endpoint id → why its latest policy is not in the kernel yet (the reconciler's). */
  pending: ReadonlyMap<string, string>;
  serial<T>(fn: () => Promise<T>): Promise<T>;
  reconcile(): Promise<void>;
}

/** The reader's options (the backoff serves the writer's retries too), and the writer's coalescing window. */
export interface EndpointObjectsOptions extends RemoteEndpointsOptions {
  coalesceMs?: number;
}

/** A local endpoint's object content from the agent's parts (health.lastUpdate is the writer's). */
export function desiredEndpoints(ctx: EndpointObjectsContext, nodeName: string): Map<string, DesiredEndpoint> {
  const out = new Map<string, DesiredEndpoint>();
  for (const e of ctx.registry.all()) {
    if (!e.k8s.name) continue; // no pod to name the object after
    const id = endpointIdOf(e);
    const identity = ctx.engine.endpointIdentity(id);
    const dp = ctx.endpoints.endpoint(id);
    const policy = ctx.engine.endpointPolicy(id);
    const state: EndpointObjectState = identity === undefined ? 'waiting-for-identity' : !dp ? 'not-ready' : ctx.pending.has(id) ? 'regenerating' : 'ready';
    out.set(id, {
      namespace: e.k8s.namespace ?? 'default',
      name: e.k8s.name,
      status: {
        nodeName,
        endpointID: dp?.epId ?? 0,
        identity: {
          id: identity ?? ReservedIdentity.init,
          labels: identity === undefined ? ['reserved:init'] : (ctx.engine.allocator.get(identity)?.labels.toStrings() ?? []),
        },
        networking: { addresses: addressesOf(e.ips) },
        namedPorts: ctx.subscriber.podNamedPorts(id).map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })),
        state,
        policy: { ingress: { enforcing: policy?.ingress.defaultDeny ?? false }, egress: { enforcing: policy?.egress.defaultDeny ?? false } },
        health: { healthy: state === 'ready', lastUpdate: '' },
      },
    });
  }
  return out;
}

export class EndpointObjects {
  readonly remote: RemoteEndpoints;
  readonly writer: EndpointObjectWriter;
  private ctx: EndpointObjectsContext | null = null;
  /** Other nodes' pods whose last change the engine refused, and their retry. */
  private readonly failed = new Set<string>();
  private retryTimer: NodeJS.Timeout | null = null;
  private retries = 0;
  private stopped = false;

  constructor(private readonly o: EndpointObjectsOptions) {
    const { coalesceMs, ...reader } = o;
    const retry = { ...(o.backoff ? { backoff: o.backoff } : {}) };
    // The watch of every node's objects shows this node's too: the writer repairs what others delete or edit.
    this.remote = new RemoteEndpoints({ ...reader, onOwnObject: (id, status) => this.writer.observed(id, status) });
    this.writer = new EndpointObjectWriter({
      client: o.client,
      nodeName: o.nodeName,
      desired: () => (this.ctx ? desiredEndpoints(this.ctx, o.nodeName) : new Map()),
      ...retry,
      ...(coalesceMs !== undefined ? { coalesceMs } : {}),
      ...(o.log ? { log: o.log } : {}),
    });
  }

  /**
   * Starts reading other nodes' objects into the engine and resolves after the first list has been
   * queued: the agent's first reconcile, queued after it, sees them.
   */
  async attach(ctx: EndpointObjectsContext): Promise<void> {
    this.ctx = ctx;
    this.remote.start((ids) => this.applyRemote(ctx, ids));
    await this.remote.synced;
  }

  /** Other nodes' pods into the engine, then the datapath; the ones that fail are tried again with backoff. */
  private applyRemote(ctx: EndpointObjectsContext, ids: readonly string[]): void {
    ctx
      .serial(async () => {
        for (const id of ids) {
          try {
            await ctx.subscriber.syncOrRemove(id);
            this.failed.delete(id);
            if (!ctx.engine.isLocalEndpoint(id)) this.remote.checkIdentity(id, ctx.engine.endpointIdentity(id));
          } catch (e) {
            // Its previous state stays in the engine (an identity that could not be allocated, …).
            this.failed.add(id);
            this.o.log?.error('remote endpoint not applied; its previous state stays, retrying', { endpoint: id, err: e });
          }
        }
        await ctx.reconcile();
      })
      .catch((e: unknown) => this.o.log?.error('remote endpoints not written to the datapath', { err: e }))
      .finally(() => {
        if (this.failed.size === 0) this.retries = 0;
        else if (!this.retryTimer && !this.stopped) {
          this.retryTimer = setTimeout(() => {
            this.retryTimer = null;
            this.applyRemote(ctx, [...this.failed]);
          }, backoffMs(++this.retries, this.o.backoff ?? { initialMs: 500, maxMs: 30_000 }));
        }
      });
  }

  /** The agent runs: adopt this node's objects, then keep them current. */
  startWriting(): void {
    this.writer.start();
  }

  changed(): void {
    this.writer.changed();
  }

  status(): z.input<typeof EndpointObjectsStatus> {
    return { writer: this.writer.status(), remote: this.remote.status() };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    await this.writer.stop();
    await this.remote.stop();
  }
}
