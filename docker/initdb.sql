-- The databases of the rblock-tune stack, created once on a new PostgreSQL:
--   mlflow: the MLflow tracking server's backend store
--   optuna: the Optuna studies (rblock-tune study run --optuna-storage postgresql://.../optuna)
-- Run by the postgres image at its first start (compose mounts this file into
-- /docker-entrypoint-initdb.d/) and by `docker/stack.sh up` with psql: the same file, so the two agree.
-- Idempotent (psql's \gexec runs each CREATE only when that database is missing).
SELECT 'CREATE DATABASE mlflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec
SELECT 'CREATE DATABASE optuna' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'optuna')\gexec
