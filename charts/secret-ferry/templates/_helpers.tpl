{{/*
Helpers. The public ones (documented in the chart README) are:
  secret-ferry.sidecarContainer   the secret-ferry container of the sidecar shapes (one list item)
  secret-ferry.initContainers     that container when it belongs in initContainers (native sidecar, init-only), else nothing
  secret-ferry.containers         that container when it belongs in containers (plain sidecar), else nothing
  secret-ferry.volumes            the shared volume, the config volume, the ExternalId volume, extraVolumes
  secret-ferry.appVolumeMount     a read-only mount of the shared volume for the app container
  secret-ferry.podAnnotations     the config checksum, for the parent's pod template
  secret-ferry.automountServiceAccountToken  "true" only when the sidecar talks to the Kubernetes API
A parent chart calls them with its root context (`.`); they find this chart's values under
`.Subcharts.secret-ferry`. With an aliased dependency pass that context: `(index .Subcharts "alias")`.
*/}}

{{- define "secret-ferry.name" -}}
{{- default "secret-ferry" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name. The chart name is fixed ("secret-ferry") so that a parent chart computes the same name. */}}
{{- define "secret-ferry.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "secret-ferry" .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "secret-ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "secret-ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "secret-ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "secret-ferry.labels" -}}
helm.sh/chart: {{ include "secret-ferry.chart" . }}
{{ include "secret-ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: secret-ferry
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "secret-ferry.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "secret-ferry.serviceAccountName" -}}
{{- if eq .Values.mode "sidecar" }}
{{- .Values.sidecar.serviceAccountName }}
{{- else if .Values.serviceAccount.create }}
{{- default (include "secret-ferry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "secret-ferry.configMapName" -}}
{{- include "secret-ferry.fullname" . }}
{{- end }}

{{- define "secret-ferry.leaseName" -}}
{{- default (include "secret-ferry.fullname" .) .Values.controller.leaderElection.leaseName }}
{{- end }}

{{/* "true" when the controller runs with --leader-elect. */}}
{{- define "secret-ferry.leaderElect" -}}
{{- if and (eq .Values.mode "controller") (or (gt (int .Values.controller.replicas) 1) .Values.controller.leaderElection.enabled) }}true{{ end }}
{{- end }}

{{/* The config file as it goes into the ConfigMap; validated here so that mistakes fail the install, not the pod. */}}
{{- define "secret-ferry.configYaml" -}}
{{- $c := .Values.config | default dict }}
{{- if not (or $c.secrets $c.tenants) }}
{{- fail "config: set config.secrets (or config.tenants): the secret-ferry configuration; see the chart README" }}
{{- end }}
{{- if and (eq .Values.mode "sidecar") .Values.sidecar.nativeSidecar .Values.sidecar.initOnly }}
{{- fail "sidecar.nativeSidecar and sidecar.initOnly exclude each other: choose one" }}
{{- end }}
{{- /* externalId.existingSecret is mounted (secret-ferry.container) as a directory, one file per key: the mount itself is
never a valid externalIdFile (the daemon would fail at run time with "Is a directory"). The path is
cleaned first so that a trailing slash, "//" or "/." cannot slip past either check. */}}
{{- $idMount := "/etc/secret-ferry/external-id" }}
{{- range $name, $role := ($c.roles | default dict) }}
{{- if and (kindIs "map" $role) $role.externalIdFile }}
{{- $idFile := clean (toString $role.externalIdFile) }}
{{- if eq $idFile $idMount }}
{{- if $.Values.externalId.existingSecret }}
{{- fail (printf "config.roles.%s.externalIdFile is %s, the directory where externalId.existingSecret (%s) is mounted, not a file: use %s/<key>, the file of one key of that Secret (e.g. %s/external-id for the key external-id)" $name (toString $role.externalIdFile) $.Values.externalId.existingSecret $idMount $idMount) }}
{{- else }}
{{- fail (printf "config.roles.%s.externalIdFile is %s, the directory where the chart mounts externalId.existingSecret, not a file: set externalId.existingSecret and use %s/<key>, the file of one key of that Secret (e.g. %s/external-id for the key external-id)" $name (toString $role.externalIdFile) $idMount $idMount) }}
{{- end }}
{{- end }}
{{- if and (hasPrefix (printf "%s/" $idMount) $idFile) (not $.Values.externalId.existingSecret) }}
{{- fail (printf "config.roles.%s.externalIdFile is under /etc/secret-ferry/external-id/: set externalId.existingSecret to the Secret holding the ExternalId" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- $roots := list }}
{{- if eq .Values.mode "sidecar" }}
{{- $roots = append $roots (trimSuffix "/" .Values.sidecar.mountPath) }}
{{- end }}
{{- range .Values.extraVolumeMounts }}
{{- if not .readOnly }}
{{- $roots = append $roots (trimSuffix "/" .mountPath) }}
{{- end }}
{{- end }}
{{- $paths := list }}
{{- range $i, $s := ($c.secrets | default list) }}
{{- range $j, $t := ($s.targets | default list) }}
{{- if and (kindIs "map" $t) $t.file }}
{{- $paths = append $paths (dict "where" (printf "config.secrets[%d].targets[%d].file" $i $j) "path" (toString (default $t.file.path $t.file.dir))) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $i, $o := ($c.credentialOutputs | default list) }}
{{- if and (kindIs "map" $o) $o.file }}
{{- $paths = append $paths (dict "where" (printf "config.credentialOutputs[%d].file" $i) "path" (toString $o.file.path)) }}
{{- end }}
{{- end }}
{{- range $paths }}
{{- $p := .path }}
{{- $ok := false }}
{{- range $roots }}
{{- if hasPrefix (printf "%s/" .) $p }}{{ $ok = true }}{{ end }}
{{- end }}
{{- if not $ok }}
{{- if eq $.Values.mode "sidecar" }}
{{- fail (printf "%s: %s is not under sidecar.mountPath (%s) or a writable extraVolumeMounts path; the root filesystem is read-only" .where $p $.Values.sidecar.mountPath) }}
{{- else }}
{{- fail (printf "%s: %s is not on a writable volume; add it with extraVolumes/extraVolumeMounts (the root filesystem is read-only)" .where $p) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $c }}
{{- end }}

{{/*
What the config needs from the Kubernetes API, as YAML:
  namespaces: {<ns>: {names: [...], create: bool, delete: bool, tenant: bool, events: bool, lease: bool}}
  cluster: bool   (a tenants rule with namespaceSelector)
*/}}
{{- define "secret-ferry.rbacPlan" -}}
{{- $c := .Values.config | default dict }}
{{- $own := .Release.Namespace }}
{{- $ns := dict }}
{{- $delete := false }}
{{- $cluster := false }}
{{- range $s := ($c.secrets | default list) }}
{{- range $t := ($s.targets | default list) }}
{{- if and (kindIs "map" $t) $t.kubernetesSecret }}
{{- $k := $t.kubernetesSecret }}
{{- $n := default $own $k.namespace }}
{{- $e := get $ns $n | default (dict "names" list "create" false "delete" false "tenant" false "events" true "lease" false) }}
{{- $_ := set $e "names" (append $e.names $k.name) }}
{{- if ne (default "Owner" $k.creationPolicy) "Merge" }}{{ $_ := set $e "create" true }}{{ end }}
{{- if eq (default "Retain" $k.deletionPolicy) "Delete" }}{{ $delete = true }}{{ end }}
{{- $_ := set $ns $n $e }}
{{- end }}
{{- end }}
{{- end }}
{{- range $p := ($c.pushes | default list) }}
{{- if and (kindIs "map" $p.from) $p.from.kubernetesSecret }}
{{- $k := $p.from.kubernetesSecret }}
{{- $n := default $own $k.namespace }}
{{- $e := get $ns $n | default (dict "names" list "create" false "delete" false "tenant" false "events" true "lease" false) }}
{{- $_ := set $e "pushNames" (append ($e.pushNames | default list) $k.name) }}
{{- $_ := set $e "events" true }}
{{- $_ := set $ns $n $e }}
{{- end }}
{{- end }}
{{- range $r := ($c.tenants | default list) }}
{{- if $r.namespaceSelector }}{{ $cluster = true }}{{ end }}
{{- range $n := ($r.namespaces | default list) }}
{{- $e := get $ns $n | default (dict "names" list "create" false "delete" false "tenant" false "events" true "lease" false) }}
{{- $_ := set $e "tenant" true }}
{{- $_ := set $ns $n $e }}
{{- end }}
{{- end }}
{{- if $delete }}
{{- $e := get $ns $own | default (dict "names" list "create" false "delete" false "tenant" false "events" false "lease" false) }}
{{- $_ := set $ns $own $e }}
{{- range $n, $e := $ns }}
{{- if or $e.names (eq $n $own) }}{{ $_ := set $e "delete" true }}{{ end }}
{{- end }}
{{- end }}
{{- if include "secret-ferry.leaderElect" . }}
{{- $e := get $ns $own | default (dict "names" list "create" false "delete" false "tenant" false "events" false "lease" false) }}
{{- $_ := set $e "lease" true }}
{{- $_ := set $ns $own $e }}
{{- end }}
{{- toYaml (dict "namespaces" $ns "cluster" $cluster) }}
{{- end }}

{{/* "true" when the daemon talks to the Kubernetes API (Secret targets, push sources, tenants, leader election). */}}
{{- define "secret-ferry.needsKubeApi" -}}
{{- $plan := include "secret-ferry.rbacPlan" . | fromYaml }}
{{- if or $plan.namespaces $plan.cluster }}true{{ end }}
{{- end }}

{{- define "secret-ferry.checksum" -}}
{{- include "secret-ferry.configYaml" . | sha256sum }}
{{- end }}

{{/*
The secret-ferry container. Argument: (dict "ctx" <this chart's context> "shape" "controller|sidecar|native|init").
*/}}
{{- define "secret-ferry.container" -}}
{{- $ := .ctx }}
{{- $v := $.Values }}
{{- $shape := .shape }}
{{- $portName := ternary "metrics" $v.sidecar.portName (eq $shape "controller") -}}
- name: {{ ternary "secret-ferry" $v.sidecar.containerName (eq $shape "controller") }}
  image: {{ include "secret-ferry.image" $ | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if eq $shape "native" }}
  restartPolicy: Always
  {{- end }}
  args:
    - run
    - --config
    - /etc/secret-ferry/config/config.yaml
    {{- if eq $shape "init" }}
    - --once
    {{- else }}
    - --listen
    - 0.0.0.0:{{ $v.port }}
    {{- end }}
    {{- if and (eq $shape "controller") (include "secret-ferry.leaderElect" $) }}
    - --leader-elect
    - --lease-name
    - {{ include "secret-ferry.leaseName" $ }}
    - --lease-duration
    - {{ $v.controller.leaderElection.leaseDuration }}
    - --lease-renew-deadline
    - {{ $v.controller.leaderElection.renewDeadline }}
    - --lease-retry-period
    - {{ $v.controller.leaderElection.retryPeriod }}
    {{- end }}
  env:
    - name: SECRET_FERRY_LOG_FORMAT
      value: {{ $v.logFormat | quote }}
    - name: RUST_LOG
      value: {{ $v.logLevel | quote }}
    - name: POD_NAME
      valueFrom:
        fieldRef: {fieldPath: metadata.name}
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef: {fieldPath: metadata.namespace}
    - name: POD_UID
      valueFrom:
        fieldRef: {fieldPath: metadata.uid}
    {{- with $v.aws.region }}
    - name: AWS_REGION
      value: {{ . | quote }}
    {{- end }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if ne $shape "init" }}
  ports:
    - name: {{ $portName }}
      containerPort: {{ $v.port }}
      protocol: TCP
  {{- end }}
  {{- if eq $shape "native" }}
  startupProbe:
    httpGet: {path: /readyz, port: {{ $portName }}}
    {{- toYaml $v.sidecar.startupProbe | nindent 4 }}
  {{- end }}
  {{- if ne $shape "init" }}
  readinessProbe:
    httpGet: {path: /readyz, port: {{ $portName }}}
    {{- toYaml $v.readinessProbe | nindent 4 }}
  livenessProbe:
    httpGet: {path: /healthz, port: {{ $portName }}}
    {{- toYaml $v.livenessProbe | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml (ternary $v.controller.resources $v.sidecar.resources (eq $shape "controller")) | nindent 4 }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: {{ include "secret-ferry.fullname" $ | trunc 56 | trimSuffix "-" }}-config
      mountPath: /etc/secret-ferry/config
      readOnly: true
    {{- if $v.externalId.existingSecret }}
    - name: {{ include "secret-ferry.fullname" $ | trunc 52 | trimSuffix "-" }}-external-id
      mountPath: /etc/secret-ferry/external-id
      readOnly: true
    {{- end }}
    {{- if ne $shape "controller" }}
    - name: {{ $v.sidecar.volumeName }}
      mountPath: {{ $v.sidecar.mountPath }}
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* The pod volumes of the secret-ferry container, except the shared one. Argument: this chart's context. */}}
{{- define "secret-ferry.ownVolumes" -}}
- name: {{ include "secret-ferry.fullname" . | trunc 56 | trimSuffix "-" }}-config
  configMap:
    name: {{ include "secret-ferry.configMapName" . }}
    items:
      - {key: config.yaml, path: config.yaml}
{{- with .Values.externalId.existingSecret }}
- name: {{ include "secret-ferry.fullname" $ | trunc 52 | trimSuffix "-" }}-external-id
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* ---- public templates for parent charts ---- */}}

{{/* native | init | sidecar. Argument: this chart's context. */}}
{{- define "secret-ferry.sidecarShape" -}}
{{- if .Values.sidecar.nativeSidecar }}native{{ else if .Values.sidecar.initOnly }}init{{ else }}sidecar{{ end }}
{{- end }}

{{- define "secret-ferry.sidecarContainer" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
{{- if ne $ctx.Values.mode "sidecar" }}
{{- fail "secret-ferry.sidecarContainer: set mode: sidecar in the secret-ferry values" }}
{{- end }}
{{- $_ := include "secret-ferry.configYaml" $ctx }}
{{- include "secret-ferry.container" (dict "ctx" $ctx "shape" (include "secret-ferry.sidecarShape" $ctx)) }}
{{- end }}

{{- define "secret-ferry.initContainers" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
{{- if or $ctx.Values.sidecar.nativeSidecar $ctx.Values.sidecar.initOnly }}
{{- include "secret-ferry.sidecarContainer" $ctx }}
{{- end }}
{{- end }}

{{- define "secret-ferry.containers" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
{{- if not (or $ctx.Values.sidecar.nativeSidecar $ctx.Values.sidecar.initOnly) }}
{{- include "secret-ferry.sidecarContainer" $ctx }}
{{- end }}
{{- end }}

{{- define "secret-ferry.volumes" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
- name: {{ $ctx.Values.sidecar.volumeName }}
  {{- toYaml $ctx.Values.sidecar.volume | nindent 2 }}
{{ include "secret-ferry.ownVolumes" $ctx }}
{{- end }}

{{- define "secret-ferry.appVolumeMount" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
- name: {{ $ctx.Values.sidecar.volumeName }}
  mountPath: {{ $ctx.Values.sidecar.mountPath }}
  readOnly: true
{{- end }}

{{- define "secret-ferry.podAnnotations" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
checksum/secret-ferry-config: {{ include "secret-ferry.checksum" $ctx }}
{{- end }}

{{- define "secret-ferry.automountServiceAccountToken" -}}
{{- $ctx := . }}
{{- if and (hasKey . "Subcharts") .Subcharts (hasKey .Subcharts "secret-ferry") }}{{ $ctx = index .Subcharts "secret-ferry" }}{{ end -}}
{{- if include "secret-ferry.needsKubeApi" $ctx }}true{{ else }}false{{ end }}
{{- end }}
