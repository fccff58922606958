#!/usr/bin/env bash
# Makes sure Postgres (5432), Redis (6379) and NATS with JetStream (4222) answer on 127.0.0.1,
# starting the machine's own servers when they are down (the commands of the machine's env
# notes). Idempotent. Tests always use these real servers, never mocks.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for <name> <port>
  for _ in $(seq 1 100); do up "$2" && return 0; sleep 0.1; done
  echo "infra: $1 did not come up on 127.0.0.1:$2" >&2
  return 1
}

if ! up 5432; then
  echo "infra: starting postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  wait_for postgres 5432
fi
if ! up 6379; then
  echo "infra: starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  wait_for redis 6379
fi
if ! up 4222; then
  echo "infra: starting nats-server (jetstream)"
  mkdir -p /var/lib/nats-server
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
  wait_for nats 4222
fi
# The test database must exist (trust auth as user postgres).
if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
  psql -h 127.0.0.1 -U postgres -Atc 'create database test' >/dev/null
fi
echo "infra: postgres, redis and nats are up"
