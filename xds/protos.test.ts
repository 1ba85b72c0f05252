import assert from 'node:assert/strict';
import { test } from 'node:test';
import { xdsProtos } from './protos.js';

test('the network ext_proc filter config and processor service (Envoy 1.40) load with the package protos', () => {
  const root = xdsProtos();
  const cfg = root.lookupType('envoy.extensions.filters.network.ext_proc.v3.NetworkExternalProcessor');
  assert.equal(cfg.fields.message_timeout?.id, 4);
  assert.equal(cfg.fields.grpc_service?.resolve().resolvedType?.fullName, '.envoy.config.core.v3.GrpcService');
  const svc = root.lookupService('envoy.service.network_ext_proc.v3.NetworkExternalProcessor');
  const process = svc.methods.Process;
  assert.ok(process?.requestStream && process.responseStream);
  const res = root.lookupType('envoy.service.network_ext_proc.v3.ProcessingResponse');
  const bytes = res.encode(res.fromObject({ write_data: { data: Buffer.from('x') }, connection_status: 'CLOSE' })).finish();
  assert.deepEqual(res.toObject(res.decode(bytes), { enums: String }), { write_data: { data: Buffer.from('x') }, connection_status: 'CLOSE' });
});
