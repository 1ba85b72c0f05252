/**
 * What meshd claims to the Gateway API conformance suite: the profiles it
 * runs and the extended features it says it supports (`--supported-features`).
 * The suite runs every core test of each profile and the extended tests of
 * exactly these features; a claimed feature whose tests fail is reported as
 * failed, never dropped from the run. Before a report is submitted upstream,
 * a feature that failed in the recorded run (docs/conformance/README.md
 * lists them) is removed from this list. Claimed: the features whose tests
 * all passed in the recorded full run (docs/conformance/README.md). Failed
 * there, so not claimed until they pass: GatewayPort8080 and
 * HTTPRoutePortRedirect (HTTPRouteRedirectPortAndScheme),
 * GatewayHTTPListenerIsolation, HTTPRouteParentRefPort
 * (HTTPRouteListenerPortMatching), HTTPRouteRequestMirror,
 * HTTPRouteRequestMultipleMirrors, HTTPRouteRequestPercentageMirror (the
 * suite reads the mirrored request from the backend Pod's log, which the test
 * node does not serve), BackendTLSPolicy (BackendTLSPolicyConflictResolution).
 */

/** Profiles (conformance/utils/suite/profiles.go of the suite). GATEWAY-TLS is not claimed: its core is TLSRoute (TLS passthrough), which meshd does not serve (such listeners are Accepted=False, UnsupportedProtocol). */
export const PROFILES = ['GATEWAY-HTTP', 'GATEWAY-GRPC'] as const;

/**
 * Extended features meshd's Gateway API controller implements (names as in
 * sigs.k8s.io/gateway-api/pkg/features). Core features of the profiles
 * (Gateway, HTTPRoute, ReferenceGrant, GRPCRoute) are implied. Not claimed,
 * because meshd does not do them yet (docs/gateway-api.md, "Not done yet"):
 * TLSRoute, HTTPRouteBackendProtocolH2C and HTTPRouteBackendProtocolWebSocket
 * (the backend protocol does not follow a Service port's appProtocol),
 * BackendTLSPolicySANValidation (subjectAltNames are not checked).
 */
export const SUPPORTED_FEATURES = [
  'Gateway',
  'HTTPRoute',
  'ReferenceGrant',
  'GRPCRoute',
  'GatewayAddressEmpty',
  'HTTPRouteQueryParamMatching',
  'HTTPRouteMethodMatching',
  'HTTPRouteResponseHeaderModification',
  'HTTPRouteBackendRequestHeaderModification',
  'HTTPRouteSchemeRedirect',
  'HTTPRoutePathRedirect',
  'HTTPRoute303RedirectStatusCode',
  'HTTPRoute307RedirectStatusCode',
  'HTTPRoute308RedirectStatusCode',
  'HTTPRouteHostRewrite',
  'HTTPRoutePathRewrite',
  'HTTPRouteRequestTimeout',
  'HTTPRouteBackendTimeout',
  'HTTPRouteDestinationPortMatching',
  'HTTPRouteNamedRouteRule',
  'GRPCRouteNamedRouteRule',
  'GRPCRouteRequestHeaderModifier',
] as const;
