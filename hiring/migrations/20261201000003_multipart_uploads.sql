-- A presigned upload too large for one PUT is an S3 multipart upload: its id, kept until the
-- client asks the API to assemble the parts (`POST /uploads/{id}/complete`).
ALTER TABLE ingestions ADD COLUMN upload_id text;
