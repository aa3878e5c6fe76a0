-- The files of one upload (POST /upload, POST /uploads) form a group: its first ingestion's
-- id. In the deployed pipeline each file starts its own execution and nothing orders them, so
-- a hires file is validated only once no departments or jobs file of its group is unfinished
-- (issue 16, item 1): the order the API promises holds there too.
ALTER TABLE ingestions ADD COLUMN upload_group bigint;
CREATE INDEX ingestions_upload_group ON ingestions (upload_group) WHERE upload_group IS NOT NULL;
