-- Presigned uploads: `POST /uploads` records a file before the client puts it into the raw
-- zone, so the client has an ingestion id to follow at once. Such an ingestion is
-- `awaiting_upload`, with its key and no ETag, until the pipeline's first step meets the object
-- (then it is `queued` with the object's ETag, as an upload through the API is), or until its
-- URL expires (then it is `failed`).
ALTER TABLE ingestions DROP CONSTRAINT ingestions_status_check;
ALTER TABLE ingestions ADD CONSTRAINT ingestions_status_check
    CHECK (status IN ('awaiting_upload', 'queued', 'validating', 'validated', 'rejected', 'running', 'succeeded',
                      'failed'));

ALTER TABLE ingestions ADD COLUMN upload_expires_at timestamptz;

CREATE INDEX ingestions_awaiting ON ingestions (object_key) WHERE status = 'awaiting_upload';
