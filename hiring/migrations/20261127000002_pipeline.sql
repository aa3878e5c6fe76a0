-- The pipeline's steps (validate, then process) record their progress on the ingestion, and an
-- object of the raw zone (key and ETag) is ingested once: running a step again on the same
-- object version finds its ingestion and returns what was recorded instead of writing again.
--
-- Statuses: queued (the object is in the raw zone, waiting for the pipeline), validating,
-- validated (some rows can be loaded), rejected (none can: the validation is final),
-- running (processing: loading into PostgreSQL), succeeded, failed.
ALTER TABLE ingestions DROP CONSTRAINT ingestions_status_check;
ALTER TABLE ingestions ADD CONSTRAINT ingestions_status_check
    CHECK (status IN ('queued', 'validating', 'validated', 'rejected', 'running', 'succeeded', 'failed'));

ALTER TABLE ingestions
    ADD COLUMN object_key text,
    ADD COLUMN object_etag text,
    -- The validation report (counts by reason, decision), once validated.
    ADD COLUMN validation jsonb,
    -- Where the step outputs went, relative to their zones.
    ADD COLUMN rejects_key text,
    ADD COLUMN processed_key text;

-- NULLs are distinct, so batches (no object) never conflict.
CREATE UNIQUE INDEX ingestions_object ON ingestions (object_key, object_etag);

-- Steps interrupted by a crash are found by their status and their free advisory lock.
DROP INDEX ingestions_running;
CREATE INDEX ingestions_in_progress ON ingestions (started_at) WHERE status IN ('validating', 'running');
