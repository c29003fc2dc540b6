-- session_tree over the 1,000-node tree, as the service reads it (keen_app, tenant context).
BEGIN;
SELECT set_config('role', 'keen_app', true), set_config('app.current_user_id', md5('bench-tree')::uuid::text, true);
SELECT count(*) FROM keen.session_tree('tree1k-0');
END;
