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

-- Hire counts per (year, department, job), one column per quarter by UTC month, so the metrics
-- read a few thousand rows instead of every hire.
--
-- It is an append-only log of deltas: every write to hired_employees appends, in the same
-- transaction, one row per key it changed (+1 per new hire, -1 and +1 per replaced one), and
-- readers sum by key. Appending takes no row locks, so concurrent loads never wait on each other
-- here; hires_rollup_compact() folds the deltas into one row per key from time to time.
-- Anything else that writes hires directly must call hires_rollup_refresh() in its transaction.
CREATE TABLE hires_rollup (
    year integer NOT NULL,
    department_id integer NOT NULL,
    job_id integer NOT NULL,
    q1 integer NOT NULL DEFAULT 0,
    q2 integer NOT NULL DEFAULT 0,
    q3 integer NOT NULL DEFAULT 0,
    q4 integer NOT NULL DEFAULT 0
);
CREATE INDEX hires_rollup_key ON hires_rollup (year, department_id, job_id);

CREATE FUNCTION hires_rollup_refresh() RETURNS void LANGUAGE sql AS $$
    DELETE FROM hires_rollup;
    INSERT INTO hires_rollup (year, department_id, job_id, q1, q2, q3, q4)
    SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer AS year, department_id, job_id,
           count(*) FILTER (WHERE extract(quarter FROM datetime AT TIME ZONE 'UTC') = 1),
           count(*) FILTER (WHERE extract(quarter FROM datetime AT TIME ZONE 'UTC') = 2),
           count(*) FILTER (WHERE extract(quarter FROM datetime AT TIME ZONE 'UTC') = 3),
           count(*) FILTER (WHERE extract(quarter FROM datetime AT TIME ZONE 'UTC') = 4)
    FROM hired_employees
    GROUP BY 1, 2, 3;
$$;

-- Folds the deltas into one row per key (dropping keys whose counts are all zero). Rows appended
-- by transactions that commit meanwhile are not in this statement's snapshot: they stay, as
-- deltas, so nothing is lost or counted twice, and no lock is needed.
CREATE FUNCTION hires_rollup_compact() RETURNS void LANGUAGE sql AS $$
    WITH folded AS (
        DELETE FROM hires_rollup RETURNING *
    )
    INSERT INTO hires_rollup (year, department_id, job_id, q1, q2, q3, q4)
    SELECT year, department_id, job_id, sum(q1), sum(q2), sum(q3), sum(q4)
    FROM folded
    GROUP BY 1, 2, 3
    HAVING sum(q1) <> 0 OR sum(q2) <> 0 OR sum(q3) <> 0 OR sum(q4) <> 0;
$$;
