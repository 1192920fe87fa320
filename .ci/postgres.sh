# Sourced by .ci/run: makes a PostgreSQL server available on localhost and
# exports STEPFLOW_TEST_PG. Uses the installed cluster when there is one,
# installs the Debian package otherwise.
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  echo "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
if command -v pg_lsclusters >/dev/null 2>&1 && [ -n "$(pg_lsclusters -h 2>/dev/null)" ]; then
  read -r pgver pgcluster pgport _ < <(pg_lsclusters -h | head -1)
  pg_ctlcluster "$pgver" "$pgcluster" start 2>/dev/null || true
else
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  pgdata=/tmp/stepflow-ci-pg
  pgport=54329
  if [ ! -d "$pgdata" ]; then
    mkdir -p "$pgdata" && chown postgres "$pgdata"
    su postgres -c "$pgbin/initdb -D $pgdata -A trust" >/dev/null
  fi
  su postgres -c "$pgbin/pg_ctl -D $pgdata -o '-p $pgport' -l $pgdata/log -w start" >/dev/null
fi
for _ in $(seq 1 30); do
  su postgres -c "psql -p $pgport -Atqc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -p $pgport -qc \"do \\\$\\\$ begin if not exists (select from pg_roles where rolname='stepflow') then create role stepflow login password 'stepflow' superuser; end if; end \\\$\\\$;\"" >/dev/null
su postgres -c "psql -p $pgport -Atqc \"select 1 from pg_database where datname='stepflow_test'\"" | grep -q 1 ||
  su postgres -c "psql -p $pgport -qc 'create database stepflow_test owner stepflow'" >/dev/null
export STEPFLOW_TEST_PG="postgres://stepflow:stepflow@127.0.0.1:${pgport}/stepflow_test?sslmode=disable"
echo "PostgreSQL ready on port $pgport"
