{{/* Names */}}
{{- define "faas.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "faas.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels. Selectors use only name, instance and component: labels that never
change on upgrade (a selector is immutable). Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "faas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "faas.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "faas.labels" -}}
{{ include "faas.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: faas
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{- define "faas.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The worker pods' image: worker.image.* where set, else the platform image. */}}
{{- define "faas.workerImage" -}}
{{- $w := .Values.worker.image -}}
{{ $w.repository | default .Values.image.repository }}:{{ $w.tag | default .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "faas.workerPullPolicy" -}}
{{ .Values.worker.image.pullPolicy | default .Values.image.pullPolicy }}
{{- end -}}

{{/* PriorityClass names: per release and namespace when the chart creates them
(they are cluster-scoped), else the names given (possibly none). */}}
{{- define "faas.priorityClass" -}}
{{- $pc := .ctx.Values.priorityClasses -}}
{{- if $pc.create -}}
{{- printf "%s-%s-%s" .ctx.Release.Namespace (include "faas.fullname" .ctx) .tier -}}
{{- else -}}
{{- (index $pc .tier).name -}}
{{- end -}}
{{- end -}}

{{/* priorityClassName line for a pod spec; call with (dict "ctx" $ "tier" "core"). */}}
{{- define "faas.priorityClassName" -}}
{{- with include "faas.priorityClass" . -}}
priorityClassName: {{ . }}
{{- end -}}
{{- end -}}

{{- define "faas.redisSecret" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "faas.fullname" .)) -}}
{{- end -}}

{{/* "true" or empty (include returns a string: "false" would be truthy). */}}
{{- define "faas.redisAuth" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.enabled -}}true{{- end -}}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "faas.redisUrl" -}}
{{- if .ctx.Values.redis.enabled -}}
redis://{{ if include "faas.redisAuth" .ctx }}{{ .component }}:$(REDIS_PASSWORD)@{{ end }}{{ include "faas.fullname" .ctx }}-redis-0.{{ include "faas.fullname" .ctx }}-redis:6379/0
{{- else -}}
{{ .ctx.Values.externalRedis.url }}
{{- end -}}
{{- end -}}

{{/* The Redis ACL file: the same lines as common.store.redis_acl_lines (a chart
test compares them). Call with (dict "ctx" $ "passwords" (user -> password)). */}}
{{- define "faas.redisAcl" -}}
{{- $p := .ctx.Values.keyPrefix -}}
{{- $base := "+ping +eval +evalsha +script|load +script|exists" -}}
{{- $grants := dict
  "gateway" (printf "+multi +exec +discard +hset +hget +hmget +hgetall +hstrlen +hincrby +hdel +zadd +zrange +zrem +zrevrangebyscore +rpush +lrange +del +set +get +exists +expire +persist +xadd +xack +xdel +xlen +xpending +xrevrange +xtrim +getrange +strlen +publish +subscribe +unsubscribe +sadd +smembers ~%[1]s:fn:* ~%[1]s:functions:* ~%[1]s:name:*:* ~%[1]s:bundle:* ~%[1]s:task:* ~%[1]s:workers ~%[1]s:index:* ~%[1]s:tasks:* ~%[1]s:idem:*:* ~%[1]s:queue ~%[1]s:queue:nested ~%[1]s:unfinished ~%[1]s:status ~%[1]s:cancels ~%[1]s:logs:* ~%[1]s:deps:* ~%[1]s:result:* ~%[1]s:args:* &%[1]s:done" $p)
  "dispatcher" (printf "+xgroup|create +xreadgroup +xack +xdel +xadd +xrange +xlen +xpending +xtrim +hmget +hset +hget +hgetall +hstrlen +hincrby +hdel +exists +expire +persist +publish +get +mget +set +strlen +pexpire +del +rename +blpop +lpop +append +rpush +sadd +smembers ~%[1]s:queue ~%[1]s:queue:nested ~%[1]s:task:* ~%[1]s:workers ~%[1]s:fn:* ~%[1]s:bundle:* ~%[1]s:lease ~%[1]s:lost-workers ~%[1]s:cancels ~%[1]s:unfinished ~%[1]s:status ~%[1]s:index:* ~%[1]s:idem:*:* ~%[1]s:logs:* ~%[1]s:deps:* ~%[1]s:blob:*:* ~%[1]s:result:* ~%[1]s:args:* &%[1]s:done" $p)
  "controller" (printf "+xlen +xpending +rpush ~%[1]s:queue ~%[1]s:queue:nested ~%[1]s:lost-workers" $p)
-}}
user default on #{{ sha256sum .passwords.admin }} ~* &* +@all
{{- range $user, $password := .passwords }}
{{- if eq $user "admin" }}
user admin on #{{ sha256sum $password }} ~* &* +@all
{{- else }}
user {{ $user }} on #{{ sha256sum $password }} resetkeys resetchannels -@all {{ $base }} {{ index $grants $user }}
{{- end }}
{{- end }}
{{ end -}}

{{- define "faas.dispatcherUrl" -}}
tcp://{{ include "faas.fullname" . }}-dispatcher:{{ .Values.dispatcher.port }}
{{- end -}}

{{- define "faas.apiKeySecret" -}}
{{- .Values.apiKey.existingSecret | default (printf "%s-api-key" (include "faas.fullname" .)) -}}
{{- end -}}

{{/* The Secret holding the tenants' keys file, or empty when there are no tenants. */}}
{{- define "faas.tenantsSecret" -}}
{{- if .Values.tenants.existingSecret -}}
{{- .Values.tenants.existingSecret -}}
{{- else if .Values.tenants.keys -}}
{{- printf "%s-tenants" (include "faas.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The worker link's CURVE keys: "true" or empty. Local mode's dispatcher makes
ephemeral keys for its own worker, so it needs no Secret. */}}
{{- define "faas.workerLink" -}}
{{- if and .Values.workerLink.enabled (ne .Values.mode "local") -}}true{{- end -}}
{{- end -}}

{{- define "faas.workerLinkSecret" -}}
{{- .Values.workerLink.existingSecret | default (printf "%s-worker-link" (include "faas.fullname" .)) -}}
{{- end -}}

{{/* An env var from a key of the worker link Secret; call with (list $ NAME KEY). */}}
{{- define "faas.workerLinkEnvVar" -}}
- name: {{ index . 1 }}
  valueFrom:
    secretKeyRef:
      name: {{ include "faas.workerLinkSecret" (index . 0) }}
      key: {{ index . 2 }}
{{- end -}}

{{/* Hardening shared by every pod: non-root, read-only root, no privileges. */}}
{{- define "faas.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "faas.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Environment every platform process reads (see common/settings.py). */}}
{{- define "faas.commonEnv" -}}
- name: FAAS_KEY_PREFIX
  value: {{ .Values.keyPrefix | quote }}
- name: FAAS_LOG_JSON
  value: {{ .Values.logJson | quote }}
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- end -}}

{{/* FAAS_REDIS_URL as the component's own Redis user, its password carried
through Kubernetes' $(VAR) expansion of an earlier variable: the rendered manifest
holds no secret, and a pod gets no other component's password.
Call with (dict "ctx" $ "component" "gateway"). */}}
{{- define "faas.redisEnv" -}}
{{- if include "faas.redisAuth" .ctx -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "faas.redisSecret" .ctx }}
      key: {{ .component }}
{{ end -}}
- name: FAAS_REDIS_URL
  value: {{ include "faas.redisUrl" . | quote }}
{{- end -}}

{{/* What runs user code (workers; the dispatcher in local mode) gets: PYTHONPATH
with the userCode ConfigMap, and worker.extraEnv. */}}
{{/* What the pods that run slots (workers; the dispatcher in local mode) get: user
code, extra env and volumes, and the functions' environments (installed on a
writable volume, since the root filesystem is read-only). */}}
{{- define "faas.userCodeEnv" -}}
- name: FAAS_ENV_DIR
  value: /var/cache/faas/envs
- name: PIP_CACHE_DIR
  value: /var/cache/faas/pip
{{- with .Values.environments }}
- name: FAAS_ENV_CACHE_MAX_BYTES
  value: {{ .cache.maxBytes | int64 | quote }}
{{- if .indexUrl }}
- name: FAAS_PIP_INDEX_URL
  value: {{ .indexUrl | quote }}
{{- end }}
{{- if .findLinks }}
- name: FAAS_PIP_FIND_LINKS
  value: {{ .findLinks | quote }}
{{- end }}
{{- if .noIndex }}
- name: FAAS_PIP_NO_INDEX
  value: "true"
{{- end }}
{{- if .trustedHosts }}
- name: FAAS_PIP_TRUSTED_HOSTS
  value: {{ .trustedHosts | quote }}
{{- end }}
{{- end }}
{{ if .Values.userCode.configMap -}}
- name: PYTHONPATH
  value: {{ .Values.userCode.mountPath | quote }}
{{ end -}}
{{- with .Values.worker.extraEnv -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "faas.userCodeVolumeMounts" -}}
- name: environments
  mountPath: /var/cache/faas
{{ if .Values.userCode.configMap -}}
- name: user-code
  mountPath: {{ if .Values.userCode.package }}{{ printf "%s/%s" .Values.userCode.mountPath .Values.userCode.package }}{{ else }}{{ .Values.userCode.mountPath }}{{ end }}
  readOnly: true
{{ end -}}
{{- with .Values.worker.extraVolumeMounts -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "faas.userCodeVolumes" -}}
- name: environments
{{- if .Values.environments.cache.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.environments.cache.existingClaim }}
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.environments.cache.sizeLimit }}
{{- end }}
{{ if .Values.userCode.configMap -}}
- name: user-code
  configMap:
    name: {{ .Values.userCode.configMap }}
{{ end -}}
{{- with .Values.worker.extraVolumes -}}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* Refuse contradictory values at render time. */}}
{{- define "faas.validateValues" -}}
{{- if and .Values.redis.enabled .Values.externalRedis.url -}}
{{- fail "set either redis.enabled=true or externalRedis.url, not both" -}}
{{- end -}}
{{- if and (not .Values.redis.enabled) (not .Values.externalRedis.url) -}}
{{- fail "redis.enabled=false needs externalRedis.url" -}}
{{- end -}}
{{- if gt (int .Values.workerPool.minReplicas) (int .Values.workerPool.maxReplicas) -}}
{{- fail "workerPool.minReplicas must not exceed workerPool.maxReplicas" -}}
{{- end -}}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) (int .Values.worker.drainTimeoutSeconds) -}}
{{- fail "worker.terminationGracePeriodSeconds must exceed worker.drainTimeoutSeconds, or draining workers are killed" -}}
{{- end -}}
{{- if and .Values.apiKey.existingSecret (not .Values.apiKey.enabled) -}}
{{- fail "apiKey.existingSecret is set but apiKey.enabled=false" -}}
{{- end -}}
{{- if and .Values.redis.auth.existingSecret (not (include "faas.redisAuth" .)) -}}
{{- fail "redis.auth.existingSecret is set but the chart's Redis or its auth is off" -}}
{{- end -}}
{{- if and .Values.priorityClasses.create (le (int .Values.priorityClasses.core.value) (int .Values.priorityClasses.worker.value)) -}}
{{- fail "priorityClasses.core.value must exceed priorityClasses.worker.value, or the core pods cannot preempt workers" -}}
{{- end -}}
{{- if and .Values.workerLink.existingSecret (not .Values.workerLink.enabled) -}}
{{- fail "workerLink.existingSecret is set but workerLink.enabled=false" -}}
{{- end -}}
{{- if and .Values.gateway.ingress.tls.enabled (not .Values.gateway.ingress.tls.secretName) -}}
{{- fail "gateway.ingress.tls.enabled needs gateway.ingress.tls.secretName" -}}
{{- end -}}
{{- end -}}

{{/* Pod annotations telling Prometheus where /metrics is: (dict "ctx" $ "port" N). */}}
{{- define "faas.metricsAnnotations" -}}
{{- if .ctx.Values.metrics.enabled }}
annotations:
  prometheus.io/scrape: "true"
  prometheus.io/port: {{ .port | quote }}
  prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/* The metrics container port of the dispatcher, workers and controller. */}}
{{- define "faas.metricsPort" -}}
{{- if .Values.metrics.enabled }}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
{{- end }}
{{- end }}

{{/* FAAS_METRICS_PORT for the dispatcher, workers and controller. */}}
{{- define "faas.metricsEnv" -}}
{{- if .Values.metrics.enabled }}
- name: FAAS_METRICS_PORT
  value: {{ .Values.metrics.port | quote }}
{{- end }}
{{- end }}

{{/* The NetworkPolicy rule that lets the scraper reach a metrics port. */}}
{{- define "faas.metricsIngress" -}}
{{- if .Values.metrics.enabled }}
- from:
    {{- toYaml .Values.metrics.scrapeFrom | nindent 4 }}
  ports:
    - {port: metrics, protocol: TCP}
{{- end }}
{{- end }}
