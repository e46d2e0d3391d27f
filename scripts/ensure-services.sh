#!/usr/bin/env bash
# Start each local server the integration tests need, if it is not already answering.
# The commands are the ones this machine kind documents; each is skipped when its port is open.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 1 60); do
    port_open "$port" && return 0
    sleep 1
  done
  echo "ensure-services: $name did not open port $port" >&2
  return 1
}

start() {
  local name=$1 port=$2; shift 2
  if port_open "$port"; then
    echo "ensure-services: $name up on $port"
    return 0
  fi
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "ensure-services: $name is down and $1 is not installed; its tests will be skipped" >&2
    return 0
  fi
  echo "ensure-services: starting $name"
  "$@" >/dev/null 2>&1 || true
  wait_port "$name" "$port" || true
}

start postgresql 5432 pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql 2>/dev/null | head -1)" main start
start redis 6379 redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
start rabbitmq 5672 rabbitmq-server -detached
start mosquitto 1883 mosquitto -d -c /etc/mosquitto/mosquitto.conf
exit 0
