-- A movie's entity tag, made by the database at every insert and update, whoever the writer:
-- its version (bumped here too, so no writer can change a movie and keep its version) and a
-- random part, so that no tag is ever reused: not after a restore from a backup (versions
-- repeat from the dumped ones), not for a new movie given an old id.
ALTER TABLE movies ADD COLUMN etag TEXT;
UPDATE movies SET etag = version || '.' || substr(md5(gen_random_uuid()::text), 1, 12);
ALTER TABLE movies ALTER COLUMN etag SET NOT NULL;

CREATE FUNCTION movies_revise() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.version := OLD.version + 1;
    END IF;
    NEW.etag := NEW.version || '.' || substr(md5(gen_random_uuid()::text), 1, 12);
    RETURN NEW;
END
$$;

CREATE TRIGGER movies_revise BEFORE INSERT OR UPDATE ON movies
    FOR EACH ROW EXECUTE FUNCTION movies_revise();
