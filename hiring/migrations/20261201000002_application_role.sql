-- The application's role, `hiring_app`: what the API and the functions need to serve (reading
-- and writing rows, the identity sequences) and nothing more: no DDL, no other database, no
-- role management. They log in as it, with its own password (the stack's secret), which the
-- bootstrap (`secrets::bootstrap`, as the master user) applies; the master user runs the
-- migrations only.
--
-- Roles belong to the whole server: creating one needs CREATEROLE, which RDS's master user
-- and a local superuser have. A database user without it (someone's own DATABASE_URL) skips
-- this, and keeps using its own user.
DO $$
BEGIN
    IF NOT (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user) THEN
        RAISE NOTICE 'not creating role hiring_app: % may not create roles', current_user;
        RETURN;
    END IF;
    BEGIN
        CREATE ROLE hiring_app NOLOGIN;
    EXCEPTION
        -- Another database of the same server (tests) created it first.
        WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    GRANT USAGE ON SCHEMA public TO hiring_app;
    GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO hiring_app;
    GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO hiring_app;
    -- The migrations' own bookkeeping stays the master user's.
    REVOKE ALL ON _sqlx_migrations FROM hiring_app;
    -- Tables and sequences later migrations create, as the same user.
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO hiring_app;
    ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO hiring_app;
END
$$;
