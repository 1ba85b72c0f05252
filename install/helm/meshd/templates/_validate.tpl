{{/*
Values validation that the schema cannot express with a clear message:
every key must be one this chart declares (values.yaml); a Cilium key meshd
does not support says what to do instead (files/unsupported-cilium-values.yaml);
Cilium keys meshd accepts with one value only fail on the others.
*/}}

{{- define "meshd.validate" -}}
{{- /* files/values.yaml links to values.yaml: the declared keys and their defaults (.Files leaves values.yaml out). */ -}}
{{- $defaults := .Files.Get "files/values.yaml" | fromYaml -}}
{{- $unsupported := .Files.Get "files/unsupported-cilium-values.yaml" | fromYaml -}}
{{- /* Kubernetes objects passed through as they are: their keys are the API's, not the chart's. */ -}}
{{- $open := list "resources" "nodeSelector" "affinity" "podAnnotations" "podLabels" "updateStrategy" "securityContext.seLinuxOptions" "hubble.relay.resources" "hubble.ui.resources" -}}
{{- include "meshd.validateKeys" (dict "defaults" $defaults "values" (omit .Values "global") "prefix" "" "unsupported" $unsupported "open" $open) -}}
{{- if not .Values.tls.readSecretsOnlyFromSecretsNamespace -}}
{{- fail "tls.readSecretsOnlyFromSecretsNamespace=false: the chart does not grant the agent read access to every Secret in the cluster; put TLS interception Secrets in tls.secretsNamespace.name and set tls.readSecretsOnlyFromSecretsNamespace=true" -}}
{{- end -}}
{{- if .Values.bpf.masquerade -}}
{{- fail "bpf.masquerade=true: meshd never masquerades pod traffic (pods keep their addresses); set bpf.masquerade=false" -}}
{{- end -}}
{{- if .Values.enableIPv4Masquerade -}}
{{- fail "enableIPv4Masquerade=true: meshd never masquerades pod traffic; set enableIPv4Masquerade=false" -}}
{{- end -}}
{{- if ne (.Values.identityGC.leaseNamespace | default .Release.Namespace) (.Values.nodeGC.leaseNamespace | default .Release.Namespace) -}}
{{- fail "identityGC.leaseNamespace and nodeGC.leaseNamespace differ: the chart grants the Leases' role in one namespace; set both to the same" -}}
{{- end -}}
{{- if and .Values.hubble.relay.enabled (empty .Values.hubble.relay.peers) -}}
{{- fail "hubble.relay.enabled=true needs hubble.relay.peers (NAME=HOST:PORT of each node's observer, hubble.listenAddress): meshd's relay has no peer discovery yet" -}}
{{- end -}}
{{- if and .Values.hubble.ui.enabled (not .Values.hubble.relay.enabled) -}}
{{- fail "hubble.ui.enabled=true reads flows from the relay: set hubble.relay.enabled=true" -}}
{{- end -}}
{{- end }}

{{- define "meshd.validateKeys" -}}
{{- $ctx := . -}}
{{- range $k, $v := .values -}}
{{- $path := ternary $k (printf "%s.%s" $ctx.prefix $k) (eq $ctx.prefix "") -}}
{{- if hasKey $ctx.unsupported $path -}}
{{- fail (printf "values key %s is a Cilium setting meshd does not support: %s" $path (get $ctx.unsupported $path)) -}}
{{- else if not (hasKey $ctx.defaults $k) -}}
{{- fail (printf "values key %s is not a meshd value (docs/install.md lists them)" $path) -}}
{{- else if and (kindIs "map" $v) (kindIs "map" (get $ctx.defaults $k)) (not (has $path $ctx.open)) -}}
{{- include "meshd.validateKeys" (dict "defaults" (get $ctx.defaults $k) "values" $v "prefix" $path "unsupported" $ctx.unsupported "open" $ctx.open) -}}
{{- end -}}
{{- end -}}
{{- end }}
