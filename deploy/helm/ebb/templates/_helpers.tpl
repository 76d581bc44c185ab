{{- define "ebb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ebb.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "ebb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "ebb.secretName" -}}
{{- .Values.secret.existingSecret | default (printf "%s-secret" (include "ebb.fullname" .)) -}}
{{- end -}}

{{/* A pool's worker Deployment: <fullname>-worker-<pool>, lower case. */}}
{{- define "ebb.workerName" -}}
{{- printf "%s-worker-%s" (include "ebb.fullname" .root) (.pool.name | lower | replace "_" "-" | replace "." "-" | replace ":" "-") | trunc 63 | trimSuffix "-" -}}
{{- end -}}
