/**
 * The standard gRPC health service (grpc.health.v1.Health/Check), which the
 * hubble CLI asks before `hubble status`. Its two tiny messages are defined
 * with protobufjs here (no package ships health.proto in this dependency set).
 *
 *   addHealthService(server);   // every service answers SERVING
 */
import type * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

const root = protobuf.Root.fromJSON({
  nested: {
    HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
    HealthCheckResponse: {
      fields: { status: { type: 'ServingStatus', id: 1 } },
      nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
    },
  },
});
const Request = root.lookupType('HealthCheckRequest');
const Response = root.lookupType('HealthCheckResponse');

const healthService: grpc.ServiceDefinition = {
  Check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (v: object) => Buffer.from(Request.encode(Request.fromObject(v)).finish()),
    requestDeserialize: (b: Buffer) => Request.toObject(Request.decode(b)),
    responseSerialize: (v: object) => Buffer.from(Response.encode(Response.fromObject(v)).finish()),
    responseDeserialize: (b: Buffer) => Response.toObject(Response.decode(b), { enums: String }),
  },
};

export function addHealthService(server: grpc.Server): void {
  server.addService(healthService, {
    Check: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: 'SERVING' }),
  });
}
