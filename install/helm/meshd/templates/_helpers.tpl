{{/* Names, labels and the image, shared by every template. */}}

{{- define "meshd.labels" -}}
app.kubernetes.io/part-of: meshd
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "meshd.image" -}}
{{- $i := .Values.image -}}
{{- if $i.digest -}}
{{ $i.repository }}@{{ $i.digest }}
{{- else -}}
{{ $i.repository }}:{{ $i.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end }}

{{/* The namespace of the Leases (identityGC and nodeGC share the one Role of files/rbac.yaml). */}}
{{- define "meshd.leaseNamespace" -}}
{{- .Values.identityGC.leaseNamespace | default .Release.Namespace -}}
{{- end }}

{{/* A dotted key's value from .Values, or nothing: (list $.Values "socketLB.enabled"). */}}
{{- define "meshd.lookup" -}}
{{- $v := index . 0 -}}
{{- $found := true -}}
{{- range $part := splitList "." (index . 1) -}}
{{- if and $found (kindIs "map" $v) (hasKey $v $part) -}}
{{- $v = get $v $part -}}
{{- else -}}
{{- $found = false -}}
{{- end -}}
{{- end -}}
{{- if and $found (not (kindIs "invalid" $v)) -}}
{{- dict "value" $v | toJson -}}
{{- end -}}
{{- end }}
