-- A reject stores at most the first 4 KiB of its row (hiring::reject::MAX_RAW_BYTES); the row's
-- full length, and its SHA-256 when it was cut, identify the rest. Rows rejected before this
-- migration have neither (their raw text was cut at 64 KiB with a marker).
ALTER TABLE rejects
    ADD COLUMN raw_bytes bigint,
    ADD COLUMN raw_sha256 bytea;
