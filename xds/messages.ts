/**
 * Discovery request/response shapes as the stream handlers see them, and the
 * boundary that turns wire bytes into them: protobuf decode, then zod, so a
 * handler never touches an unvalidated field.
 */
import type protobuf from 'protobufjs';
import { z } from 'zod';
import type { AnyMessage } from './resource-codec.js';
import { xdsProtos } from './protos.js';
import { encodeDeltaDiscoveryResponse, encodeDiscoveryResponse } from './wire.js';

const status = z.object({ code: z.number().int().optional(), message: z.string().optional() });
const node = z.object({ id: z.string().optional(), cluster: z.string().optional() }).loose();

const discoveryRequest = z.object({
  version_info: z.string().default(''),
  node: node.optional(),
  resource_names: z.array(z.string()).default([]),
  type_url: z.string().default(''),
  response_nonce: z.string().default(''),
  error_detail: status.optional(),
}).loose();

const deltaDiscoveryRequest = z.object({
  node: node.optional(),
  type_url: z.string().default(''),
  resource_names_subscribe: z.array(z.string()).default([]),
  resource_names_unsubscribe: z.array(z.string()).default([]),
  initial_resource_versions: z.record(z.string(), z.string()).default({}),
  response_nonce: z.string().default(''),
  error_detail: status.optional(),
}).loose();

const anyMessage = z.object({ type_url: z.string().default(''), value: z.instanceof(Uint8Array).default(() => new Uint8Array()) });

const discoveryResponse = z.object({
  version_info: z.string().default(''),
  resources: z.array(anyMessage).default([]),
  type_url: z.string().default(''),
  nonce: z.string().default(''),
});

const deltaDiscoveryResponse = z.object({
  system_version_info: z.string().default(''),
  resources: z.array(z.object({ name: z.string().default(''), version: z.string().default(''), resource: anyMessage })).default([]),
  type_url: z.string().default(''),
  removed_resources: z.array(z.string()).default([]),
  nonce: z.string().default(''),
});

export type DiscoveryRequest = z.infer<typeof discoveryRequest>;
export type DeltaDiscoveryRequest = z.infer<typeof deltaDiscoveryRequest>;

export interface DiscoveryResponse {
  version_info: string;
  resources: AnyMessage[];
  type_url: string;
  nonce: string;
}

export interface DeltaResource {
  name: string;
  version: string;
  resource: AnyMessage;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  type_url: string;
  removed_resources: string[];
  nonce: string;
}

/** A decoded request, or why it could not be decoded (the stream then ends with INVALID_ARGUMENT). */
export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export interface MessageCodec<Req, Res> {
  decode(buf: Buffer): Decoded<Req>;
  encode(res: Res): Buffer;
  /** For clients and tests. */
  encodeRequest(req: Req): Buffer;
  decodeResponse(buf: Buffer): Res;
}

function toRecord(v: unknown): Record<string, unknown> {
  if (typeof v !== 'object' || v === null) throw new TypeError('message must be an object');
  return Object.fromEntries(Object.entries(v));
}

function describeZod(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

const toObjectOpts: protobuf.IConversionOptions = { longs: String, enums: String, bytes: Buffer, defaults: false, arrays: true, objects: true };

function makeCodec<Req, Res>(
  reqName: string,
  resName: string,
  schema: z.ZodType<Req>,
  resSchema: z.ZodType<Res>,
  encode: (res: Res) => Buffer,
): MessageCodec<Req, Res> {
  const root = xdsProtos();
  const reqType = root.lookupType(reqName);
  const resType = root.lookupType(resName);
  return {
    decode(buf) {
      let obj: unknown;
      try {
        obj = reqType.toObject(reqType.decode(buf), toObjectOpts);
      } catch (e) {
        return { ok: false, error: `undecodable ${reqType.name}: ${e instanceof Error ? e.message : String(e)}` };
      }
      const parsed = schema.safeParse(obj);
      return parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: `invalid ${reqType.name}: ${describeZod(parsed.error)}` };
    },
    // written straight from the resources' cached encodings (wire.ts), not through protobufjs
    encode,
    encodeRequest(req) {
      return Buffer.from(reqType.encode(reqType.fromObject(toRecord(req))).finish());
    },
    decodeResponse(buf) {
      return resSchema.parse(resType.toObject(resType.decode(buf), toObjectOpts));
    },
  };
}

let sotw: MessageCodec<DiscoveryRequest, DiscoveryResponse> | undefined;
let delta: MessageCodec<DeltaDiscoveryRequest, DeltaDiscoveryResponse> | undefined;

export function sotwCodec(): MessageCodec<DiscoveryRequest, DiscoveryResponse> {
  sotw ??= makeCodec(
    'envoy.service.discovery.v3.DiscoveryRequest',
    'envoy.service.discovery.v3.DiscoveryResponse',
    discoveryRequest,
    discoveryResponse,
    encodeDiscoveryResponse,
  );
  return sotw;
}

export function deltaCodec(): MessageCodec<DeltaDiscoveryRequest, DeltaDiscoveryResponse> {
  delta ??= makeCodec(
    'envoy.service.discovery.v3.DeltaDiscoveryRequest',
    'envoy.service.discovery.v3.DeltaDiscoveryResponse',
    deltaDiscoveryRequest,
    deltaDiscoveryResponse,
    encodeDeltaDiscoveryResponse,
  );
  return delta;
}
