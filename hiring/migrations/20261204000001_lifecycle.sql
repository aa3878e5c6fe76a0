-- The ingestion lifecycle (docs/architecture.md, "The ingestion lifecycle"; hiring::lifecycle
-- owns every move). A retryable failure and a final one are different states: `retrying` (the
-- same step runs again) and `failed` (final: nothing moves it, and sending the file again
-- starts a new ingestion). Each claim of a step counts an attempt, and the step's own moves are
-- guarded on it, so a late answer from an old attempt cannot move a newer one. `moved_at` is
-- the time of the last move: a waiting state's deadline is measured from it.
ALTER TABLE ingestions DROP CONSTRAINT ingestions_status_check;
ALTER TABLE ingestions ADD CONSTRAINT ingestions_status_check
    CHECK (status IN ('awaiting_upload', 'queued', 'validating', 'validated', 'rejected', 'running', 'retrying',
                      'succeeded', 'failed'));

ALTER TABLE ingestions
    ADD COLUMN attempt integer NOT NULL DEFAULT 0,
    ADD COLUMN moved_at timestamptz NOT NULL DEFAULT now();

-- Existing rows: the last move is the end, or else the start. A `failed` ingestion was
-- re-claimable before; which of them failed retryably cannot be told now, so each stays
-- failed, for good (its file can be sent again, as a new upload). An object version still has
-- one ingestion: a duplicate event of a failed one finds it failed.
UPDATE ingestions SET moved_at = coalesce(finished_at, started_at), attempt = CASE WHEN status = 'awaiting_upload' OR status = 'queued' THEN 0 ELSE 1 END;

-- The sweep reads the waiting states by their last move.
CREATE INDEX ingestions_waiting ON ingestions (moved_at)
    WHERE status IN ('awaiting_upload', 'queued', 'validated', 'retrying');

-- A presigned upload's file is taken once: the first complete PUT marks the announced
-- ingestion received (a guarded move, still awaiting_upload until the pipeline meets the
-- object); every later PUT is refused. `announced` tells an announced key's duplicate S3
-- event (another version of the same key) from a new file.
ALTER TABLE ingestions
    ADD COLUMN received_at timestamptz,
    ADD COLUMN announced boolean NOT NULL DEFAULT false;
UPDATE ingestions SET announced = true WHERE status = 'awaiting_upload' OR upload_id IS NOT NULL;
