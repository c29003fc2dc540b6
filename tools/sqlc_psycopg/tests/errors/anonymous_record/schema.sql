CREATE FUNCTION pairs() RETURNS TABLE (a integer, b text) LANGUAGE sql AS $$ SELECT 1, 'x' $$;
