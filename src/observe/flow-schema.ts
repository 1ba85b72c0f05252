/**
 * The boundary check for flows that arrive over the network (meshd observe,
 * the relay): a GetFlowsResponse as proto-loader decodes it, validated into
 * the types of flow.ts. Fields meshd does not read pass through untouched.
 *
 *   const r = parseFlowsResponse(msg);   // throws FlowResponseError naming the field
 */
import { z } from 'zod';
import { MeshdError } from '../util/errors.js';
import type { Flow, LostEvent } from './flow.js';

export class FlowResponseError extends MeshdError {
  constructor(message: string) {
    super('MESHD_OBSERVE_RESPONSE_INVALID', message, { kind: 'failed' });
  }
}

const ts = z.object({ seconds: z.string().default('0'), nanos: z.number().int().default(0) });
const port = z.number().int().default(0);
const ports = z.object({ source_port: port, destination_port: port }).passthrough();
const endpoint = z
  .object({
    ID: z.number().optional(),
    identity: z.number().int().default(0),
    namespace: z.string().optional(),
    labels: z.array(z.string()).default([]),
    pod_name: z.string().optional(),
    workloads: z.array(z.object({ name: z.string().default(''), kind: z.string().default('') })).optional(),
  })
  .passthrough();
const l4 = z.union([
  z.object({ protocol: z.literal('TCP'), TCP: ports.extend({ flags: z.record(z.string(), z.boolean()).optional() }) }).passthrough(),
  z.object({ protocol: z.literal('UDP'), UDP: ports }).passthrough(),
  z.object({ protocol: z.literal('SCTP'), SCTP: ports }).passthrough(),
  z.object({ protocol: z.literal('ICMPv4'), ICMPv4: z.object({ type: port, code: port }) }).passthrough(),
  z.object({ protocol: z.literal('ICMPv6'), ICMPv6: z.object({ type: port, code: port }) }).passthrough(),
]);
const l7type = z.enum(['UNKNOWN_L7_TYPE', 'REQUEST', 'RESPONSE', 'SAMPLE']).default('UNKNOWN_L7_TYPE');
const l7 = z.union([
  z
    .object({
      type: l7type,
      latency_ns: z.string().optional(),
      record: z.literal('http'),
      http: z.object({ code: z.number().int().default(0), method: z.string().default(''), url: z.string().default(''), protocol: z.string().default('') }).passthrough(),
    })
    .passthrough(),
  z.object({ type: l7type, latency_ns: z.string().optional(), record: z.literal('dns'), dns: z.object({ query: z.string().default('') }).passthrough() }).passthrough(),
  z
    .object({
      type: l7type,
      latency_ns: z.string().optional(),
      record: z.literal('kafka'),
      kafka: z.object({ api_key: z.string().default(''), topic: z.string().default(''), error_code: port, api_version: port, correlation_id: port }).passthrough(),
    })
    .passthrough(),
]);
const svc = z.object({ name: z.string().default(''), namespace: z.string().default('') });

export const FlowSchema = z
  .object({
    time: ts.default({ seconds: '0', nanos: 0 }),
    uuid: z.string().default(''),
    verdict: z.enum(['VERDICT_UNKNOWN', 'FORWARDED', 'DROPPED', 'ERROR', 'AUDIT', 'REDIRECTED', 'TRACED', 'TRANSLATED']).default('VERDICT_UNKNOWN'),
    drop_reason: z.number().optional(),
    drop_reason_desc: z.string().optional(),
    IP: z.object({ source: z.string().default(''), destination: z.string().default(''), ipVersion: z.enum(['IPv4', 'IPv6']).default('IPv4') }).passthrough().optional(),
    l4: l4.optional(),
    source: endpoint.default({ identity: 0, labels: [] }),
    destination: endpoint.default({ identity: 0, labels: [] }),
    Type: z.enum(['UNKNOWN_TYPE', 'L3_L4', 'L7', 'SOCK']).default('UNKNOWN_TYPE'),
    node_name: z.string().default(''),
    l7: l7.optional(),
    event_type: z.object({ type: z.number().int().default(0), sub_type: z.number().int().default(0) }).default({ type: 0, sub_type: 0 }),
    source_service: svc.optional(),
    destination_service: svc.optional(),
    traffic_direction: z.enum(['TRAFFIC_DIRECTION_UNKNOWN', 'INGRESS', 'EGRESS']).default('TRAFFIC_DIRECTION_UNKNOWN'),
    is_reply: z.object({ value: z.boolean().default(false) }).optional(),
    policy_log: z.array(z.string()).optional(),
  })
  .passthrough();

const LostSchema = z
  .object({
    source: z.enum(['UNKNOWN_LOST_EVENT_SOURCE', 'PERF_EVENT_RING_BUFFER', 'OBSERVER_EVENTS_QUEUE', 'HUBBLE_RING_BUFFER']).default('UNKNOWN_LOST_EVENT_SOURCE'),
    num_events_lost: z.string().default('0'),
    first: ts.optional(),
    last: ts.optional(),
  })
  .passthrough();

const ResponseSchema = z.union([
  z.object({ response_types: z.literal('flow'), flow: FlowSchema, node_name: z.string().default(''), time: ts.optional() }).passthrough(),
  z.object({ response_types: z.literal('lost_events'), lost_events: LostSchema, node_name: z.string().default(''), time: ts.optional() }).passthrough(),
  z.object({ response_types: z.literal('node_status'), node_status: z.unknown(), node_name: z.string().default('') }).passthrough(),
]);

export type ParsedFlowsResponse =
  | { kind: 'flow'; flow: Flow; nodeName: string; raw: unknown }
  | { kind: 'lost'; lost: LostEvent; nodeName: string; raw: unknown }
  | { kind: 'node_status'; nodeName: string; raw: unknown };

export function parseFlowsResponse(msg: unknown): ParsedFlowsResponse {
  const r = ResponseSchema.safeParse(msg);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new FlowResponseError(`GetFlowsResponse.${(i?.path ?? []).map(String).join('.')}: ${i?.message ?? 'invalid'}`);
  }
  const d = r.data;
  if (d.response_types === 'flow') return { kind: 'flow', flow: d.flow, nodeName: d.node_name, raw: msg };
  if (d.response_types === 'lost_events') return { kind: 'lost', lost: d.lost_events, nodeName: d.node_name, raw: msg };
  return { kind: 'node_status', nodeName: d.node_name, raw: msg };
}
