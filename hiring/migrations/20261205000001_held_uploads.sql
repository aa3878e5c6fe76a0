-- The files of one POST /upload with the state machine are stored one by one, and each stored
-- file's event starts a step at once. They are announced `held`: no step claims a held
-- ingestion (hiring::lifecycle), so nothing of the upload is loaded until every file of it is
-- stored and the API releases them, or the upload is abandoned and they fail together.
ALTER TABLE ingestions ADD COLUMN held boolean NOT NULL DEFAULT false;
