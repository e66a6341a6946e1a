{{/* Names and labels. */}}
{{- define "probed.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "probed.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "probed.selectorLabels" -}}
app.kubernetes.io/name: {{ include "probed.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "probed.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "probed.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The headless Service whose addresses are the replicas (peers.enabled). */}}
{{- define "probed.peersService" -}}
{{- printf "%s-peers" (include "probed.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where the exclusions token's Secret key is mounted (exclusions.tokenSecret). Not under
     /etc/probed: that is the ConfigMap's read-only volume. */}}
{{- define "probed.exclusionsTokenFile" -}}
/etc/probed-exclusions/token
{{- end -}}

{{- define "probed.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* probed.yaml, as rendered into the ConfigMap (also hashed to roll pods on change). */}}
{{- define "probed.configYaml" -}}
{{- $config := deepCopy .Values.config -}}
{{- if and .Values.peers.enabled (not $config.peers) -}}
{{- $dns := printf "%s.%s.svc.%s" (include "probed.peersService" .) .Release.Namespace .Values.peers.clusterDomain -}}
{{- $peers := dict "dns" $dns "port" (int .Values.port) "quorum" .Values.peers.quorum "alone" .Values.peers.alone "timeout" .Values.peers.timeout "sample" (int .Values.peers.sample) -}}
{{- $_ := set $config "peers" $peers -}}
{{- end -}}
{{- if .Values.exclusions.tokenSecret.name -}}
{{- $server := $config.server | default dict -}}
{{- if or (hasKey $server "exclusions_token") (hasKey $server "exclusions_token_file") -}}
{{- fail "exclusions.tokenSecret sets server.exclusions_token_file: remove config.server.exclusions_token and exclusions_token_file" -}}
{{- end -}}
{{- $_ := set $server "exclusions_token_file" (include "probed.exclusionsTokenFile" .) -}}
{{- $_ := set $config "server" $server -}}
{{- end -}}
{{- if not $config.checks -}}
{{- $rootDisk := dict "type" "disk" "path" "/" -}}
{{- $tmp := dict "type" "disk" "path" "/tmp" "write_test" true "critical" false -}}
{{- $_ := set $config "checks" (dict "root-disk" $rootDisk "tmp-writable" $tmp) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "probed.configMap" -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "probed.fullname" . }}
  labels:
    {{- include "probed.labels" . | nindent 4 }}
data:
  probed.yaml: |
    {{- include "probed.configYaml" . | nindent 4 }}
{{- end -}}

{{/* With rollOnConfigChange: a pod annotation that changes with the config, so a
     config change rolls the pods. Without it, nothing: probed reloads by itself. */}}
{{- define "probed.checksumAnnotation" -}}
{{- if .Values.rollOnConfigChange -}}
checksum/probed-config: {{ include "probed.configYaml" . | sha256sum }}
{{- end -}}
{{- end -}}

{{/* The probed container, the same in standalone and sidecar mode. */}}
{{- define "probed.container" -}}
name: probed
image: {{ include "probed.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args: ["serve"]
env:
  - name: PROBED_CONFIG
    value: /etc/probed/probed.yaml
  {{- with .Values.env }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .Values.envFrom }}
envFrom:
  {{- toYaml . | nindent 2 }}
{{- end }}
ports:
  - name: probed
    containerPort: {{ .Values.port }}
    protocol: TCP
livenessProbe:
  httpGet:
    path: /health/live
    port: probed
  periodSeconds: {{ .Values.probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.liveness.failureThreshold }}
{{- /* probed itself is ready when it serves: its Service must keep answering 503s
       while a dependency fails, not vanish from the endpoints. */}}
readinessProbe:
  httpGet:
    path: /health/live
    port: probed
  periodSeconds: {{ .Values.probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .Values.probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .Values.probes.readiness.failureThreshold }}
resources:
  {{- toYaml .Values.resources | nindent 2 }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: probed-config
    mountPath: /etc/probed
    readOnly: true
  - name: probed-tmp
    mountPath: /tmp
  {{- if .Values.exclusions.tokenSecret.name }}
  - name: probed-exclusions-token
    mountPath: {{ include "probed.exclusionsTokenFile" . | dir }}
    readOnly: true
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Standalone mode's pod securityContext: podSecurityContext, plus with icmp.unprivileged the
safe sysctl that lets every group open ICMP datagram sockets (a value set in podSecurityContext.sysctls wins). */}}
{{- define "probed.podSecurityContext" -}}
{{- $context := deepCopy .Values.podSecurityContext -}}
{{- if .Values.icmp.unprivileged -}}
{{- $sysctls := get $context "sysctls" | default list -}}
{{- $set := false -}}
{{- range $sysctls }}{{ if eq .name "net.ipv4.ping_group_range" }}{{ $set = true }}{{ end }}{{ end -}}
{{- if not $set -}}
{{- $_ := set $context "sysctls" (append $sysctls (dict "name" "net.ipv4.ping_group_range" "value" "0 2147483647")) -}}
{{- end -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{- define "probed.volumes" -}}
- name: probed-config
  configMap:
    name: {{ include "probed.fullname" . }}
- name: probed-tmp
  emptyDir:
    sizeLimit: 16Mi
{{- with .Values.exclusions.tokenSecret.name }}
- name: probed-exclusions-token
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.Values.exclusions.tokenSecret.key }}
        path: {{ include "probed.exclusionsTokenFile" $ | base }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Sidecar mode. An application chart lists probed as a dependency, sets
`probed.standalone.enabled: false`, and includes these templates in its pod
spec with the subchart's context, `.Subcharts.probed` (README, "Run it as a sidecar"):

  metadata:
    annotations:
      {{- include "probed.checksumAnnotation" .Subcharts.probed | nindent 8 }}
  spec:
    containers:
      - name: app
        {{- include "probed.sidecar.appProbes" .Subcharts.probed | nindent 8 }}
      {{- include "probed.sidecar.containers" .Subcharts.probed | nindent 6 }}
    initContainers:
      {{- include "probed.sidecar.initContainers" .Subcharts.probed | nindent 6 }}
    volumes:
      {{- include "probed.sidecar.volumes" .Subcharts.probed | nindent 6 }}

The probed chart renders the ConfigMap itself in both modes.
*/}}

{{/* `containers:` items: probed beside the app (nothing in the native form). */}}
{{- define "probed.sidecar.containers" -}}
{{- if not .Values.sidecar.native }}
- {{- include "probed.container" . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* `initContainers:` items: the native sidecar form (Kubernetes 1.29+). */}}
{{- define "probed.sidecar.initContainers" -}}
{{- if .Values.sidecar.native }}
- {{- include "probed.container" . | nindent 2 }}
  restartPolicy: Always
{{- end }}
{{- end -}}

{{- define "probed.sidecar.volumes" -}}
{{- include "probed.volumes" . }}
{{- end -}}

{{/* The application container's probes, pointing at probed's endpoints. */}}
{{- define "probed.sidecar.appProbes" -}}
{{- $p := .Values.sidecar.appProbes -}}
{{- if $p.readiness }}
readinessProbe:
  httpGet:
    path: /health/ready
    port: {{ .Values.port }}
  periodSeconds: {{ $p.readinessPeriodSeconds }}
  failureThreshold: {{ $p.readinessFailureThreshold }}
{{- end }}
{{- if $p.startup }}
startupProbe:
  httpGet:
    path: /health/startup
    port: {{ .Values.port }}
  periodSeconds: {{ $p.startupPeriodSeconds }}
  failureThreshold: {{ $p.startupFailureThreshold }}
{{- end }}
{{- if $p.liveness }}
livenessProbe:
  httpGet:
    path: /health/live
    port: {{ .Values.port }}
  periodSeconds: 10
  failureThreshold: 3
{{- end }}
{{- end -}}
