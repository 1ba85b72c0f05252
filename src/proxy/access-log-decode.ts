/**
 * The decoder of Envoy's gRPC access-log stream (envoy.service.accesslog.v3
 * StreamAccessLogsMessage), reading only the fields a flow shows.
 *
 *   const decode = accessLogDecoder();
 *   const m = decode(bytes);   // { identifier?: { log_name }, http_logs?: { log_entry: [...] } } or throws
 *
 * Envoy fills some thirty fields of every HTTPAccessLogEntry (every address,
 * eleven timings, byte counts, the stream id, the upstream cluster, TLS
 * properties, …); decoding all of them into objects, as a generic decoder of
 * the whole message does, was most of the agent's CPU per access-logged
 * request. The decoder here is protobufjs's, generated for a copy of the
 * message types that keeps only the fields listed in KEEP, with their field
 * numbers and types taken from Envoy's own .proto files (the ones
 * @grpc/grpc-js-xds ships) when the decoder is built: every other field is
 * skipped on the wire without being materialised. What the decoder returns is
 * then checked by the zod schemas in access-log-server.ts, as before.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import protobuf from 'protobufjs';
import { z } from 'zod';

/** The message types read, the name each gets in the copy, and the fields kept of each. */
const KEEP: ReadonlyArray<readonly [local: string, full: string, fields: readonly string[]]> = [
  ['Message', 'envoy.service.accesslog.v3.StreamAccessLogsMessage', ['identifier', 'http_logs']],
  ['Identifier', 'envoy.service.accesslog.v3.StreamAccessLogsMessage.Identifier', ['log_name']],
  ['HttpEntries', 'envoy.service.accesslog.v3.StreamAccessLogsMessage.HTTPAccessLogEntries', ['log_entry']],
  ['HttpEntry', 'envoy.data.accesslog.v3.HTTPAccessLogEntry', ['common_properties', 'protocol_version', 'request', 'response']],
  ['Common', 'envoy.data.accesslog.v3.AccessLogCommon', ['downstream_remote_address', 'downstream_local_address', 'start_time', 'time_to_last_downstream_tx_byte']],
  ['Address', 'envoy.config.core.v3.Address', ['socket_address']],
  ['SocketAddress', 'envoy.config.core.v3.SocketAddress', ['address', 'port_value']],
  ['Request', 'envoy.data.accesslog.v3.HTTPRequestProperties', ['request_method', 'authority', 'path']],
  ['Response', 'envoy.data.accesslog.v3.HTTPResponseProperties', ['response_code', 'response_code_details']],
  ['Timestamp', 'google.protobuf.Timestamp', ['seconds', 'nanos']],
  ['Duration', 'google.protobuf.Duration', ['seconds', 'nanos']],
  ['UInt32Value', 'google.protobuf.UInt32Value', ['value']],
];

/** Where @grpc/grpc-js-xds keeps Envoy's, xDS's and Google's .proto files. */
export function envoyProtoDirs(): string[] {
  const require = createRequire(import.meta.url);
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

/** Envoy's ALS protos as protobufjs reads them (field names as written in the .proto files). */
export function loadAlsProtos(): protobuf.Root {
  const dirs = envoyProtoDirs();
  // Envoy's protos import google/protobuf/descriptor.proto (for their options), which protobufjs
  // ships as JSON but does not register among its built-in files; proto-loader registers it the same way.
  const require = createRequire(import.meta.url);
  const descriptor = z.object({ nested: z.object({ google: z.object({ nested: z.object({ protobuf: z.object({ nested: z.record(z.string(), z.unknown()) }) }) }) }) });
  protobuf.common('descriptor', descriptor.parse(require('protobufjs/google/protobuf/descriptor.json')).nested.google.nested.protobuf.nested);
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => dirs.map((d) => join(d, target)).find((p) => existsSync(p)) ?? target;
  root.loadSync('envoy/service/accesslog/v3/als.proto', { keepCase: true });
  root.resolveAll();
  return root;
}

/**
 * The copy of the message types with only KEEP's fields. Field numbers, wire types, repetition and
 * enum values come from `full`; a field or type missing there is an error naming it.
 */
export function keptTypes(full: protobuf.Root): protobuf.Root {
  const local = new Map<protobuf.Type, string>(KEEP.map(([l, f]) => [full.lookupType(f), l]));
  const nested: Record<string, protobuf.IType | protobuf.IEnum> = {};
  for (const [l, f, names] of KEEP) {
    const t = full.lookupType(f);
    const fields: Record<string, protobuf.IField & { rule?: string }> = {};
    for (const n of names) {
      const fl = t.fields[n];
      if (!fl) throw new Error(`access-log decoder: ${f} has no field ${n}`);
      const rt = fl.resolve().resolvedType;
      let type = fl.type;
      if (rt instanceof protobuf.Type) {
        const lt = local.get(rt);
        if (!lt) throw new Error(`access-log decoder: ${f}.${n} is a ${rt.fullName}, which is not kept`);
        type = lt;
      } else if (rt instanceof protobuf.Enum) {
        type = `${l}_${n}`;
        nested[type] = { values: { ...rt.values } };
      }
      fields[n] = fl.repeated ? { id: fl.id, type, rule: 'repeated' } : { id: fl.id, type };
    }
    nested[l] = { fields };
  }
  return protobuf.Root.fromJSON({ nested });
}

/** Plain-object conversion: int64 as numbers (times in seconds), enums by name, absent fields absent. */
const TO_OBJECT: protobuf.IConversionOptions = { longs: Number, enums: String, defaults: false };

/** bytes → the kept fields of one StreamAccessLogsMessage as a plain object; throws on bytes that are not one. */
export function accessLogDecoder(): (bytes: Uint8Array) => Record<string, unknown> {
  const message = keptTypes(loadAlsProtos()).lookupType('Message');
  return (bytes) => message.toObject(message.decode(bytes), TO_OBJECT);
}
