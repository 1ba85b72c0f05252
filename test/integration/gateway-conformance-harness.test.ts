/**
 * The harness the Gateway API conformance suite runs on
 * (test/conformance/gateway.ts), checked on its own: a real kube-apiserver
 * with kube-controller-manager, one meshd agent in Kubernetes mode, and the
 * conformance test node running Pods through the agent's meshd-cni.
 *
 * - A Deployment of the suite's echo image becomes a ReplicaSet and a Pod
 *   (controller-manager); the node binds it, runs echo-basic in a namespace
 *   wired by meshd-cni with the downward-API env, and reports it Ready; the
 *   Service's EndpointSlice gets the pod's address; a request to the pod's
 *   address returns echo-basic's JSON naming the pod and its namespace.
 * - A Pod of an image with no binary here is refused with ErrImageNeverPull
 *   and never becomes Ready.
 * - Deleting the Deployment takes the Pod (garbage collection, graceful
 *   deletion the node confirms) and its network namespace.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { z } from 'zod';
import { run } from '../../src/util/exec.js';
import { ECHO_BASIC_IMAGES, startConformanceWorld } from '../helpers/conformance-world.js';
import { eventually, until } from '../helpers/kube-nodes.js';
import { requirePrivileges } from '../helpers/privileged.js';

const NS = 'gateway-conformance-infra';

const PodList = z.object({
  items: z.array(
    z.object({
      metadata: z.object({ name: z.string(), ownerReferences: z.array(z.object({ kind: z.string() })).optional() }),
      spec: z.object({ nodeName: z.string().optional() }),
      status: z.object({
        podIP: z.string().optional(),
        conditions: z.array(z.object({ type: z.string(), status: z.string() })).optional(),
        containerStatuses: z.array(z.object({ state: z.object({ waiting: z.object({ reason: z.string() }).optional() }) })).optional(),
      }),
    }),
  ),
});
const SliceList = z.object({ items: z.array(z.object({ endpoints: z.array(z.object({ addresses: z.array(z.string()) })).nullish() })) });
const Echo = z.object({ pod: z.string(), namespace: z.string(), path: z.string() });

test('conformance harness: Deployment → Pod run through meshd-cni, EndpointSlice, echo-basic answers; unknown images refused; deletion', { timeout: 240_000 }, async (t) => {
  requirePrivileges();
  const world = await startConformanceWorld(t, { nodeName: 'conformance-harness', slot: 41 });
  const { kube, node } = world;

  await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  await kube.apply([
    { apiVersion: 'v1', kind: 'Service', metadata: { name: 'infra-backend-v1', namespace: NS }, spec: { selector: { app: 'infra-backend-v1' }, ports: [{ name: 'http', protocol: 'TCP', port: 8080, targetPort: 3000 }] } },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'infra-backend-v1', namespace: NS },
      spec: {
        replicas: 1,
        selector: { matchLabels: { app: 'infra-backend-v1' } },
        template: {
          metadata: { labels: { app: 'infra-backend-v1' } },
          spec: {
            containers: [
              {
                name: 'infra-backend-v1',
                image: ECHO_BASIC_IMAGES[0],
                env: [
                  { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
                  { name: 'NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
                ],
              },
            ],
          },
        },
      },
    },
  ]);

  const pods = async () => PodList.parse(JSON.parse((await kube.kubectl(['get', 'pods', '-n', NS, '-o', 'json'])).stdout));
  const ready = await until('the Deployment\'s Pod bound to the node and Ready', async () => {
    const p = (await pods()).items.find((i) => i.metadata.ownerReferences?.some((r) => r.kind === 'ReplicaSet'));
    return p?.spec.nodeName === 'conformance-harness' && p.status.podIP !== undefined && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? { name: p.metadata.name, ip: p.status.podIP } : undefined;
  }, 90_000);
  assert.ok(node.pods().some((p) => p.name === ready.name && p.ip === ready.ip), 'the node runs the pod at the address its status names');

  await eventually('the Service\'s EndpointSlice lists the pod address', async () => {
    const r = await kube.kubectl(['get', 'endpointslices', '-n', NS, '-l', 'kubernetes.io/service-name=infra-backend-v1', '-o', 'json']);
    return SliceList.parse(JSON.parse(r.stdout)).items.some((s) => (s.endpoints ?? []).some((e) => e.addresses.includes(ready.ip)));
  }, 30_000);

  const res = await request(`http://${ready.ip}:3000/conformance-check`, { signal: AbortSignal.timeout(5_000) });
  assert.equal(res.statusCode, 200);
  const echo = Echo.parse(await res.body.json());
  assert.deepEqual({ pod: echo.pod, namespace: echo.namespace, path: echo.path }, { pod: ready.name, namespace: NS, path: '/conformance-check' });

  // An image no binary stands for: refused, never Ready.
  await kube.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'unknown-image', namespace: NS }, spec: { containers: [{ name: 'c', image: 'registry.k8s.io/gateway-api/conformance/echo-advanced:v0.1.0' }] } });
  await eventually('the unknown image refused with ErrImageNeverPull', async () => {
    const p = (await pods()).items.find((i) => i.metadata.name === 'unknown-image');
    return p?.status.containerStatuses?.[0]?.state.waiting?.reason === 'ErrImageNeverPull';
  }, 30_000);
  assert.deepEqual(node.refusedImages(), ['registry.k8s.io/gateway-api/conformance/echo-advanced:v0.1.0']);
  assert.ok(!node.pods().some((p) => p.name === 'unknown-image'), 'nothing runs for a refused pod');

  // Deleting the Deployment: the garbage collector deletes the ReplicaSet and the Pod gracefully; the node confirms.
  const netns = node.pods().find((p) => p.name === ready.name)?.netns ?? '';
  assert.notEqual(netns, '');
  const del = await kube.kubectl(['delete', 'deployment', 'infra-backend-v1', '-n', NS, '--wait=false']);
  assert.equal(del.code, 0, del.stderr);
  await eventually('the Pod object gone', async () => !(await pods()).items.some((i) => i.metadata.name === ready.name), 60_000);
  assert.ok(!node.pods().some((p) => p.name === ready.name));
  const list = await run('ip', ['netns', 'list']);
  assert.ok(!list.stdout.includes(netns.split('/').pop() ?? '-'), 'the pod\'s network namespace is removed');
});
