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

-- Hires per (year, quarter, department, job), by UTC month. Maintained by statement-level
-- triggers on hired_employees so that every write path (file loads, batches, restores, manual
-- SQL) keeps it exact, and the metrics read a few thousand rows instead of every hire.
CREATE TABLE hires_rollup (
    year integer NOT NULL,
    department_id integer NOT NULL,
    job_id integer NOT NULL,
    quarter smallint NOT NULL CHECK (quarter BETWEEN 1 AND 4),
    hires bigint NOT NULL,
    PRIMARY KEY (year, department_id, job_id, quarter)
);

CREATE FUNCTION hires_rollup_add() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hires_rollup AS r (year, department_id, job_id, quarter, hires)
    SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer,
           department_id, job_id,
           extract(quarter FROM datetime AT TIME ZONE 'UTC')::smallint,
           count(*)
    FROM new_rows
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (year, department_id, job_id, quarter) DO UPDATE SET hires = r.hires + excluded.hires;
    RETURN NULL;
END $$;

CREATE FUNCTION hires_rollup_replace() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO hires_rollup AS r (year, department_id, job_id, quarter, hires)
    SELECT year, department_id, job_id, quarter, sum(delta)
    FROM (
        SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer AS year,
               department_id, job_id,
               extract(quarter FROM datetime AT TIME ZONE 'UTC')::smallint AS quarter,
               -1 AS delta
        FROM old_rows
        UNION ALL
        SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer,
               department_id, job_id,
               extract(quarter FROM datetime AT TIME ZONE 'UTC')::smallint,
               1
        FROM new_rows
    ) AS changes
    GROUP BY 1, 2, 3, 4
    HAVING sum(delta) <> 0
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (year, department_id, job_id, quarter) DO UPDATE SET hires = r.hires + excluded.hires;
    RETURN NULL;
END $$;

CREATE FUNCTION hires_rollup_remove() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE hires_rollup AS r
    SET hires = r.hires - gone.hires
    FROM (
        SELECT extract(year FROM datetime AT TIME ZONE 'UTC')::integer AS year,
               department_id, job_id,
               extract(quarter FROM datetime AT TIME ZONE 'UTC')::smallint AS quarter,
               count(*) AS hires
        FROM old_rows
        GROUP BY 1, 2, 3, 4
    ) AS gone
    WHERE (r.year, r.department_id, r.job_id, r.quarter)
        = (gone.year, gone.department_id, gone.job_id, gone.quarter);
    RETURN NULL;
END $$;

CREATE FUNCTION hires_rollup_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE hires_rollup;
    RETURN NULL;
END $$;

CREATE TRIGGER hires_rollup_on_insert AFTER INSERT ON hired_employees
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION hires_rollup_add();
CREATE TRIGGER hires_rollup_on_update AFTER UPDATE ON hired_employees
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION hires_rollup_replace();
CREATE TRIGGER hires_rollup_on_delete AFTER DELETE ON hired_employees
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION hires_rollup_remove();
CREATE TRIGGER hires_rollup_on_truncate AFTER TRUNCATE ON hired_employees
    FOR EACH STATEMENT EXECUTE FUNCTION hires_rollup_clear();
