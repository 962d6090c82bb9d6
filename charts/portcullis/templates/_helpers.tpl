{{/* Names, labels and computed values shared by the templates. */}}

{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of every resource name: the release name when it already says "portcullis",
else `<release>-portcullis`. Kept to 50 characters so that suffixed names (`-webhook`,
`-inject`, `-selfsigned`) stay within 63.
*/}}
{{- define "portcullis.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "portcullis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* The controller's selector labels as a label selector string: k=v,k=v. */}}
{{- define "portcullis.selectorString" -}}
{{- $pairs := list }}
{{- range $key, $value := include "portcullis.selectorLabels" . | fromYaml }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ include "portcullis.chart" . }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: portcullis
{{- end }}

{{/* The controller's image reference; a digest wins over the tag. */}}
{{- define "portcullis.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "portcullis.streamService" -}}
{{ include "portcullis.fullname" . }}
{{- end }}

{{- define "portcullis.webhookService" -}}
{{ include "portcullis.fullname" . }}-webhook
{{- end }}

{{/* The cluster-scoped MutatingWebhookConfiguration. */}}
{{- define "portcullis.webhookConfig" -}}
{{ include "portcullis.fullname" . }}
{{- end }}

{{/* Self-issued mode: the Secret the controller keeps its CA and certificate in. */}}
{{- define "portcullis.tlsSecret" -}}
{{ include "portcullis.fullname" . }}-tls
{{- end }}

{{/* cert-manager mode: the serving Certificate and the Secret cert-manager writes. */}}
{{- define "portcullis.servingCertificate" -}}
{{ include "portcullis.fullname" . }}-serving
{{- end }}

{{- define "portcullis.servingSecret" -}}
{{ include "portcullis.fullname" . }}-serving-cert
{{- end }}

{{- define "portcullis.injectConfigMap" -}}
{{ include "portcullis.fullname" . }}-inject
{{- end }}

{{/*
The Lease the replicas elect a status writer with. Its name is fixed in the binary
(controller::run::LEASE_NAME), so it is not derived from the release.
*/}}
{{- define "portcullis.leaseName" -}}
portcullis-controller
{{- end }}

{{/* Namespaces never injected: the release's own, kube-system, and the extra ones. */}}
{{- define "portcullis.excludedNamespaces" -}}
{{- $namespaces := list .Release.Namespace "kube-system" }}
{{- range .Values.proxy.excludedNamespaces }}
{{- if not (has . $namespaces) }}
{{- $namespaces = append $namespaces . }}
{{- end }}
{{- end }}
{{- toJson $namespaces }}
{{- end }}

{{/* DNS names of both Services, as sidecars and the API server use them. */}}
{{- define "portcullis.dnsNames" -}}
{{- $names := list }}
{{- range (list (include "portcullis.streamService" .) (include "portcullis.webhookService" .)) }}
{{- $names = concat $names (list . (printf "%s.%s" . $.Release.Namespace) (printf "%s.%s.svc" . $.Release.Namespace) (printf "%s.%s.svc.cluster.local" . $.Release.Namespace)) }}
{{- end }}
{{- toJson $names }}
{{- end }}
