{{/*
Chart name, truncated to the 63 characters Kubernetes allows in a name.
*/}}
{{- define "pia-mqtt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: the release name, plus the chart name unless the release name
already contains it.
*/}}
{{- define "pia-mqtt.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pia-mqtt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pia-mqtt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pia-mqtt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pia-mqtt.labels" -}}
helm.sh/chart: {{ include "pia-mqtt.chart" . }}
{{ include "pia-mqtt.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pia-mqtt.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
Name of the Secret that envFrom reads: the user's, or the one this chart creates.
*/}}
{{- define "pia-mqtt.secretName" -}}
{{- default (include "pia-mqtt.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "pia-mqtt.claimName" -}}
{{- default (include "pia-mqtt.fullname" .) .Values.persistence.existingClaim }}
{{- end }}

{{/*
The secret values this chart would store (only the non-empty ones).
*/}}
{{- define "pia-mqtt.secretData" -}}
{{- $data := dict }}
{{- with .Values.pia.password }}{{ $_ := set $data "PIA_PASS" . }}{{ end }}
{{- if .Values.qbittorrent.enabled }}
{{- with .Values.qbittorrent.password }}{{ $_ := set $data "QBITTORRENT_PASS" . }}{{ end }}
{{- with .Values.qbittorrent.apiKey }}{{ $_ := set $data "QBITTORRENT_API_KEY" . }}{{ end }}
{{- end }}
{{- if .Values.transmission.enabled }}
{{- with .Values.transmission.password }}{{ $_ := set $data "TRANSMISSION_PASS" . }}{{ end }}
{{- end }}
{{- if .Values.deluge.enabled }}
{{- with .Values.deluge.password }}{{ $_ := set $data "DELUGE_PASS" . }}{{ end }}
{{- end }}
{{- if .Values.mqtt.enabled }}
{{- with .Values.mqtt.password }}{{ $_ := set $data "MQTT_PASS" . }}{{ end }}
{{- end }}
{{- with .Values.gluetun.apiKey }}{{ $_ := set $data "GLUETUN_API_KEY" . }}{{ end }}
{{- toYaml $data }}
{{- end }}

{{/*
The exec probe shared by liveness and readiness.
*/}}
{{- define "pia-mqtt.probeCommand" -}}
exec:
  command:
    - pia-mqtt
    - healthcheck
{{- end }}
