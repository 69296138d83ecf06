#!/usr/bin/env bash
# Entrypoint of the darkpool-flink image (written for this project).
#
# It follows the calling convention of the official Flink images, which is what the
# Flink Kubernetes Operator relies on: in native Kubernetes mode the operator sets the
# container command to /docker-entrypoint.sh and its arguments to something like
#   bash -c "kubernetes-jobmanager.sh kubernetes-session ..."
# so any first argument that is not one of the modes below is run as a command as is.
#
# Modes:
#   jobmanager [args]      a standalone JobManager in the foreground
#   taskmanager [args]     a standalone TaskManager in the foreground
#   standalone-job [args]  a standalone application cluster entry point
#   history-server         Flink's history server
#   job-server [flags]     Beam's Flink job server      (/opt/darkpool/bin/beam-job-server)
#   expansion-service PORT [flags]  Beam's expansion service (/opt/darkpool/bin/beam-expansion-service)
#   help                   this text
#   anything else          exec'd unchanged (pass-through)
#
# Environment:
#   FLINK_PROPERTIES  lines of YAML-style "key: value" appended to the configuration when the
#                     configuration folder is writable (it is not when the operator mounts it)
#   DISABLE_JEMALLOC  "true" keeps glibc's allocator instead of jemalloc
set -euo pipefail

FLINK_HOME="${FLINK_HOME:-/opt/flink}"
CONF_DIR="${FLINK_CONF_DIR:-$FLINK_HOME/conf}"

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

use_jemalloc() {
    local lib=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
    if [[ "${DISABLE_JEMALLOC:-false}" != "true" && -f "$lib" ]]; then
        export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$lib"
    fi
}

# The configuration file Flink 1.19 reads: config.yaml, or the legacy flink-conf.yaml.
conf_file() {
    if [[ -f "$CONF_DIR/config.yaml" ]]; then
        echo "$CONF_DIR/config.yaml"
    else
        echo "$CONF_DIR/flink-conf.yaml"
    fi
}

# FLINK_PROPERTIES: each "key: value" line replaces that key's line in the (flat) configuration
# file, or is added, so no key appears twice (Flink's YAML parser rejects duplicate keys).
add_flink_properties() {
    [[ -n "${FLINK_PROPERTIES:-}" ]] || return 0
    local file key line kept
    file="$(conf_file)"
    if ! [[ -w "$file" || ( ! -e "$file" && -w "$CONF_DIR" ) ]]; then
        echo "docker-entrypoint: $file is read-only; FLINK_PROPERTIES not applied" >&2
        return 0
    fi
    touch "$file"
    while IFS= read -r line; do
        [[ "$line" =~ ^[[:space:]]*([^#:[:space:]][^:]*):[[:space:]] ]] || continue
        key="${BASH_REMATCH[1]}"
        kept="$(awk -v k="$key:" 'index($0, k) != 1' "$file")"
        printf '%s\n' "$kept" > "$file"
        printf '%s\n' "$line" >> "$file"
    done <<< "$FLINK_PROPERTIES"
}

mode="${1:-help}"
case "$mode" in
    help|--help|-h)
        usage
        exit 0
        ;;
esac

use_jemalloc
add_flink_properties

case "$mode" in
    jobmanager)
        shift
        exec "$FLINK_HOME/bin/jobmanager.sh" start-foreground "$@"
        ;;
    taskmanager)
        shift
        exec "$FLINK_HOME/bin/taskmanager.sh" start-foreground "$@"
        ;;
    standalone-job)
        shift
        exec "$FLINK_HOME/bin/standalone-job.sh" start-foreground "$@"
        ;;
    history-server)
        shift
        exec "$FLINK_HOME/bin/historyserver.sh" start-foreground "$@"
        ;;
    job-server)
        shift
        exec /opt/darkpool/bin/beam-job-server "$@"
        ;;
    expansion-service)
        shift
        exec /opt/darkpool/bin/beam-expansion-service "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
