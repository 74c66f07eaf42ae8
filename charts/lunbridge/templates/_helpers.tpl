{{/* Names and labels shared by every object of the chart. */}}
{{- define "lunbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "lunbridge.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "lunbridge.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "lunbridge.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "lunbridge.sidecar" -}}
{{ .root.Values.sidecars.registry }}/{{ .sidecar.image }}:{{ .sidecar.tag }}
{{- end -}}

{{- define "lunbridge.vsphereSecret" -}}
{{- .Values.vsphere.existingSecret | default (printf "%s-vsphere" (include "lunbridge.fullname" .)) -}}
{{- end -}}

{{- define "lunbridge.serviceAccount" -}}
{{ include "lunbridge.fullname" .root }}-{{ .component }}
{{- end -}}

{{- define "lunbridge.driverName" -}}csi.lunbridge.io{{- end -}}

{{- define "lunbridge.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A pod's place on its host: priorityClassName (none when empty) and hostNetwork, with the DNS
     policy that keeps cluster names resolvable on the host's network. Takes a dict with
     priorityClassName and hostNetwork. */}}
{{- define "lunbridge.podHost" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- if .hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
{{- end -}}

{{/* Where a component's in-cluster clients (client-go in the sidecars, the Python kubernetes
     client in lunbridge) find the API server when the `kubernetes` Service cannot be reached
     (no kube-proxy, a host-network node that cannot route to it): the env entries
     KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT, for every container of the pod (a
     container's own env wins over the kubelet's service variables). Nothing when host is empty;
     a host without a port, or a port without a host, is refused. Takes a dict with component
     (its values key) and kubernetesService ({host, port}; missing in values from releases
     before it: none). */}}
{{- define "lunbridge.kubernetesServiceEnv" -}}
{{- $service := .kubernetesService | default dict -}}
{{- $key := printf "%s.kubernetesService" .component -}}
{{- if $service.host -}}
{{- if not $service.port -}}
{{- fail (printf "%s.host is set (%s): set %s.port too, the API server's port at that address (e.g. 6443)" $key $service.host $key) -}}
{{- end -}}
- {name: KUBERNETES_SERVICE_HOST, value: {{ $service.host | quote }}}
- {name: KUBERNETES_SERVICE_PORT, value: {{ $service.port | toString | quote }}}
{{- else if $service.port -}}
{{- fail (printf "%s.port is set (%s) without %s.host: set the API server's address too, or unset the port" $key (toString $service.port) $key) -}}
{{- end -}}
{{- end -}}

{{- define "lunbridge.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* The operator's storage backends as a JSON list of sections (backends.yaml's `backends`):
     the `backends` values, or, from releases before backends had names, one backend `tgt`
     made from storage.tgt.* when storage.tgt.portal is set; empty when neither is. Credentials
     are never in a section: existingSecret becomes credentialsDir, where the Secret is mounted. */}}
{{- define "lunbridge.backends" -}}
{{- $tgt := .Values.storage.tgt -}}
{{- $sections := list -}}
{{- if and .Values.backends $tgt.portal -}}
{{- fail "both backends and storage.tgt.portal are set: put the tgtd backend in the backends list (name: tgt, type: tgt, default: true, settings: {portal: ..., controlPort: ..., poolDir: ...}) and unset storage.tgt.portal" -}}
{{- end -}}
{{- if .Values.backends -}}
{{- $defaults := list -}}
{{- $seen := dict -}}
{{- range $i, $b := .Values.backends -}}
{{- if hasKey $seen $b.name -}}
{{- fail (printf "backends[%d].name %q is used twice: every backend needs its own name" $i $b.name) -}}
{{- end -}}
{{- $_ := set $seen $b.name true -}}
{{- $section := dict "name" $b.name "type" $b.type "settings" ($b.settings | default dict) -}}
{{- if $b.default -}}
{{- $_ := set $section "default" true -}}
{{- $defaults = append $defaults $b.name -}}
{{- end -}}
{{- if $b.existingSecret -}}
{{- $_ := set $section "credentialsDir" (include "lunbridge.credentialsDir" $b.name) -}}
{{- end -}}
{{- if $b.chapSecret -}}
{{- $_ := set $section "chapDir" (include "lunbridge.chapDir" $b.name) -}}
{{- end -}}
{{- $sections = append $sections $section -}}
{{- end -}}
{{- if gt (len $defaults) 1 -}}
{{- fail (printf "backends %s are all marked default: mark one" (join ", " $defaults)) -}}
{{- end -}}
{{- else if $tgt.portal -}}
{{- $settings := dict "portal" $tgt.portal "controlPort" $tgt.controlPort "poolDir" $tgt.poolDir "iqnPrefix" $tgt.iqnPrefix -}}
{{- with $tgt.stateFile -}}
{{- $_ := set $settings "stateFile" . -}}
{{- end -}}
{{- $sections = list (dict "name" "tgt" "type" "tgt" "default" true "settings" $settings) -}}
{{- end -}}
{{- toJson $sections -}}
{{- end -}}

{{/* Where a backend's existingSecret is mounted in the operator (its credentialsDir). */}}
{{- define "lunbridge.credentialsDir" -}}
/etc/lunbridge/backends/{{ . }}
{{- end -}}

{{/* Where a backend's CHAP Secret (chapSecret) is mounted in the operator: its chapDir. */}}
{{- define "lunbridge.chapDir" -}}
/etc/lunbridge/chap/{{ . }}
{{- end -}}

{{/* The name the operator serves disks that name no backend with: the one marked default,
     else the first (lunbridge.storage.factory.Backends.from_configs). */}}
{{- define "lunbridge.defaultBackend" -}}
{{- $sections := include "lunbridge.backends" . | fromJsonArray -}}
{{- $default := "" -}}
{{- range $sections -}}
{{- if and .default (not $default) -}}
{{- $default = .name -}}
{{- end -}}
{{- end -}}
{{- if and (not $default) $sections -}}
{{- $default = (first $sections).name -}}
{{- end -}}
{{- $default -}}
{{- end -}}

{{/* The host folders the tgt backends keep files in (pool folders, the state file's folder),
     as a sorted JSON list without repeats: each becomes a hostPath mount of the operator. */}}
{{- define "lunbridge.tgtFolders" -}}
{{- $folders := list -}}
{{- range include "lunbridge.backends" . | fromJsonArray -}}
{{- if eq .type "tgt" -}}
{{- $settings := .settings -}}
{{- if $settings.pools -}}
{{- range $pool, $folder := $settings.pools -}}
{{- $folders = append $folders $folder -}}
{{- end -}}
{{- else if $settings.poolDir -}}
{{- $folders = append $folders $settings.poolDir -}}
{{- end -}}
{{- with $settings.stateFile -}}
{{- $folders = append $folders (dir .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $folders | uniq | sortAlpha | toJson -}}
{{- end -}}
