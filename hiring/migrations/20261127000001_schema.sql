-- The three tables of the data contract. Ids are PostgreSQL `integer` and > 0.
-- Referential integrity of hires (department_id, job_id) is checked by the loader against a
-- locked snapshot of the dimension tables instead of by FOREIGN KEY triggers, which would
-- double the cost of bulk loads; departments and jobs are only ever upserted (never deleted)
-- by the loader, so an accepted hire cannot be orphaned by a later load.
CREATE TABLE departments (
    id integer PRIMARY KEY CHECK (id > 0),
    department text NOT NULL
);

CREATE TABLE jobs (
    id integer PRIMARY KEY CHECK (id > 0),
    job text NOT NULL
);

CREATE TABLE hired_employees (
    id integer PRIMARY KEY CHECK (id > 0),
    name text NOT NULL,
    datetime timestamptz NOT NULL,
    department_id integer NOT NULL,
    job_id integer NOT NULL
);

-- Every load (a file or a batch) is one ingestion.
CREATE TABLE ingestions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name text NOT NULL CHECK (table_name IN ('departments', 'jobs', 'hired_employees')),
    kind text NOT NULL CHECK (kind IN ('file', 'batch')),
    source text NOT NULL,
    status text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    rows bigint NOT NULL DEFAULT 0,
    inserted bigint NOT NULL DEFAULT 0,
    updated bigint NOT NULL DEFAULT 0,
    unchanged bigint NOT NULL DEFAULT 0,
    rejected bigint NOT NULL DEFAULT 0,
    error text
);
CREATE INDEX ingestions_running ON ingestions (started_at) WHERE status = 'running';

-- Rows that broke a rule: not inserted, but kept with their reason.
-- `position` is the 1-based line of a file, or the 0-based index of a batch row.
CREATE TABLE rejects (
    ingestion_id bigint NOT NULL REFERENCES ingestions (id) ON DELETE CASCADE,
    position bigint NOT NULL,
    reason text NOT NULL,
    message text NOT NULL,
    raw text NOT NULL,
    PRIMARY KEY (ingestion_id, position)
);

-- Hires per (year, quarter, department, job), by UTC month, so the metrics read a few thousand
-- rows instead of every hire. The loader keeps it exact in the same transaction as every write
-- to hired_employees (see hiring/src/load.rs). Anything else that writes hires directly must
-- call hires_rollup_refresh() in its transaction.
CREATE TABLE hires_rollup (
    year integer NOT NULL,
    department_id integer NOT NULL,
    job_id integer NOT NULL,
    quarter smallint NOT NULL CHECK (quarter BETWEEN 1 AND 4),
    hires bigint NOT NULL,
    PRIMARY KEY (year, department_id, job_id, quarter)
);

CREATE FUNCTION hires_rollup_refresh() RETURNS void LANGUAGE sql AS $$
    DELETE FROM hires_rollup;
    INSERT INTO hires_rollup (year, department_id, job_id, quarter, hires)
    SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer,
           department_id, job_id,
           extract(quarter FROM datetime AT TIME ZONE 'UTC')::smallint,
           count(*)
    FROM hired_employees
    GROUP BY 1, 2, 3, 4;
$$;
