-- One database per Postgres-owning service: each service owns its schema and its own sqlx
-- migration table (_sqlx_migrations), so they must not share a database.
-- Used by docker-compose (mounted into /docker-entrypoint-initdb.d/); production creates these
-- databases (and per-service roles) in the managed Postgres instead.
CREATE DATABASE gateway;
CREATE DATABASE agent_registry;
CREATE DATABASE pipeline;
CREATE DATABASE desktop_state;
CREATE DATABASE workflow;
-- MindsDB's metadata (projects, agents, jobs, job history): MINDSDB_DB_CON in docker-compose.yml.
-- MindsDB creates its own tables (alembic) on its first start.
CREATE DATABASE mindsdb;
