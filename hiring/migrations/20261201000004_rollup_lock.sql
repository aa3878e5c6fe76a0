-- The rollup's two rewriters take one lock, so they never overlap (issue 16, item 2): under
-- READ COMMITTED, a refresh's DELETE could not see the rows a concurrent compaction inserted,
-- which then survived beside the refreshed ones and doubled the metrics. The lock is a
-- transaction-level advisory lock in the two-integer key space (class 1, rollup 1), apart from
-- the one-bigint keys the ingestions use; each statement after it takes a fresh snapshot, so the
-- waiting one sees what the other committed. Loads and batches append deltas without it.
CREATE OR REPLACE FUNCTION hires_rollup_refresh() RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1, 1);
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

CREATE OR REPLACE FUNCTION hires_rollup_compact() RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(1, 1);
    WITH folded AS (
        DELETE FROM hires_rollup RETURNING *
    )
    INSERT INTO hires_rollup (year, department_id, job_id, q1, q2, q3, q4)
    SELECT year, department_id, job_id, sum(q1), sum(q2), sum(q3), sum(q4)
    FROM folded
    GROUP BY 1, 2, 3
    HAVING sum(q1) <> 0 OR sum(q2) <> 0 OR sum(q3) <> 0 OR sum(q4) <> 0;
$$;
