/**
 * What meshd claims to the Gateway API conformance suite: the profiles it
 * runs and the extended features it says it supports (`--supported-features`).
 * The suite runs every core test of each profile and the extended tests of
 * exactly these features; a claimed feature whose tests fail is reported as
 * failed, never dropped from the run. Before a report is submitted upstream,
 * a feature that failed in the recorded run (docs/conformance/README.md
 * lists them) is removed from this list.
 */

/** Profiles (conformance/utils/suite/profiles.go of the suite). */
export const PROFILES = ['GATEWAY-HTTP', 'GATEWAY-GRPC', 'GATEWAY-TLS'] as const;

/**
 * Extended features meshd's Gateway API controller implements (names as in
 * sigs.k8s.io/gateway-api/pkg/features). Core features of the profiles
 * (Gateway, HTTPRoute, ReferenceGrant, GRPCRoute, TLSRoute) are implied.
 */
export const SUPPORTED_FEATURES = [
  'Gateway',
  'HTTPRoute',
  'ReferenceGrant',
  'GRPCRoute',
  'TLSRoute',
  'GatewayPort8080',
  'GatewayHTTPListenerIsolation',
  'GatewayAddressEmpty',
  'HTTPRouteQueryParamMatching',
  'HTTPRouteMethodMatching',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteBackendRequestHeaderModification',
  'HTTPRoutePortRedirect',
  'HTTPRouteSchemeRedirect',
  'HTTPRoutePathRedirect',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteHostRewrite',
  'HTTPRoutePathRewrite',
  'HTTPRouteRequestMirror',
  'HTTPRouteRequestMultipleMirrors',
  'HTTPRouteRequestPercentageMirror',
  'HTTPRouteRequestTimeout',
  'HTTPRouteBackendTimeout',
  'HTTPRouteBackendProtocolH2C',
  'HTTPRouteBackendProtocolWebSocket',
  'HTTPRouteDestinationPortMatching',
  'HTTPRouteParentRefPort',
  'HTTPRouteNamedRouteRule',
  'GRPCRouteNamedRouteRule',
  'GRPCRouteRequestHeaderModifier',
  'BackendTLSPolicy',
  'BackendTLSPolicySANValidation',
] as const;
