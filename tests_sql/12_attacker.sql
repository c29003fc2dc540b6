-- The attacker model (issue 13, docs/security.md): tenant A's own transaction runs any SQL it
-- likes as keen_app, through a NOINHERIT service login, with its own correct context (one
-- injection in one request). Each section performs one finding's attack and asserts it
-- fails; every one of them succeeded before migration 0009.
BEGIN;
SELECT plan(77);

-- ===== fixtures (as the superuser) ===========================================
CREATE ROLE keen_test_attacker LOGIN NOINHERIT;
GRANT keen_app TO keen_test_attacker;
GRANT USAGE ON SCHEMA tap TO keen_app, keen_owner;
CREATE TABLE tap.stolen (role_name name);
GRANT INSERT, SELECT ON tap.stolen TO PUBLIC;
-- Runs a statement as the current role; returns 'SQLSTATE message' or 'ok'.
CREATE FUNCTION tap.error_of(p_sql text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE p_sql;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || SQLERRM;
END
$$;

-- Finding 1 needs a temporary type in this session before any keen function is compiled
-- here: a superuser plants it (keen_app cannot, see below), exactly as an attacker with TEMP
-- could. Its CHECK records the role that evaluates it: keen_owner means escalation.
CREATE FUNCTION pg_temp.steal(p_value pg_catalog.uuid, p_role name) RETURNS boolean
  LANGUAGE sql SECURITY DEFINER AS $$ INSERT INTO tap.stolen VALUES (p_role) RETURNING true $$;
CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.steal(VALUE, current_user));

DO $$
DECLARE
  v_a pg_catalog.uuid;
  v_b pg_catalog.uuid;
BEGIN
  v_a := keen.register_user('attacker@atk.example', 'atk_a', repeat('a', 40));
  v_b := keen.register_user('victim@atk.example', 'atk_b', repeat('b', 40));
  PERFORM set_config('test.a', v_a::text, true), set_config('test.b', v_b::text, true);
END $$;
SELECT is((SELECT count(*) FROM tap.stolen WHERE role_name = 'keen_owner'), 0::bigint,
  '1: a temporary uuid domain never runs as keen_owner inside register_user (search_path pinned, pg_temp last)');
DROP DOMAIN pg_temp.uuid;

-- The victim B: credits, auto-recharge, a running session, a connection, a token.
DO $$ BEGIN
  PERFORM set_config('role', 'keen_app', true), set_config('app.current_user_id', current_setting('test.b'), true);
  PERFORM keen.add_credits(p_amount => 100, p_stripe_payment_intent_id => 'pi_victim_paid');
  PERFORM keen.configure_auto_recharge(p_enabled => true, p_threshold => 95, p_amount => 20);
  PERFORM keen.deduct_credits(p_amount => 10);
  PERFORM keen.start_session(p_session_id => 's-b', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'main');
  PERFORM set_config('test.session_b', keen.session_uuid('s-b')::text, true);
  PERFORM set_config('role', 'keen_app', true), set_config('app.current_user_id', current_setting('test.a'), true);
  PERFORM keen.add_credits(p_amount => 50);
  PERFORM keen.start_session(p_session_id => 's-a', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'main');
END $$;
RESET ROLE;
SELECT set_config('test.request_b', (SELECT id::text FROM keen.recharge_requests
                                      WHERE user_id = current_setting('test.b')::pg_catalog.uuid), true);

-- ===== as the attacker: tenant A's transaction, a NOINHERIT login acting as keen_app =====
SET LOCAL ROLE keen_test_attacker;
SET LOCAL ROLE keen_app;
SELECT set_config('app.current_user_id', current_setting('test.a'), true);

-- 1 and 2: temporary objects (escalation; code left on a pooled connection for the next tenant)
SELECT throws_ok($$CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (VALUE IS NOT NULL)$$, '42501', NULL,
  '1: keen_app cannot create a temporary type to shadow uuid');
SELECT throws_ok($$CREATE FUNCTION pg_temp.current_user_id() RETURNS uuid LANGUAGE sql AS 'SELECT NULL::uuid'$$,
  '42501', NULL, '2: keen_app cannot leave a temporary function on the connection for the next tenant');
SELECT throws_ok($$CREATE TEMP TABLE users (id uuid)$$, '42501', NULL,
  '2: keen_app cannot leave a temporary table shadowing a keen table');
SELECT ok(NOT has_database_privilege('keen_test_attacker', current_database(), 'TEMP'),
  '2: the service login itself has no TEMP on the database');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc AS p
                   WHERE p.pronamespace = 'keen'::regnamespace
                     AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)$$,
  '1: every keen function resolves pg_catalog first and pg_temp last');

-- 3: NOTIFY payloads (the listener's side is in tests_py/test_events.py and test_credits.py)
SELECT ok(pg_get_functiondef('keen.append_session_event(keen.agent_sessions,text,jsonb)'::regprocedure) ~ 'pg_notify\(''keen_events'', ''''\)',
  '3: keen_events carries an empty payload: no tenant, user, session or event id');
SELECT ok(pg_get_functiondef('keen.request_recharge(uuid,uuid,numeric,uuid,numeric)'::regprocedure) ~ 'pg_notify\(''keen_recharge'', ''''\)',
  '3: keen_recharge carries an empty payload: no request id');

-- 4: the victim's recharge purchase cannot be blocked by a ledger row under its derivable id
SELECT throws_ok(format($$INSERT INTO keen.credit_transactions (id, user_id, account_id, transaction_type, amount, description)
                          SELECT %L, user_id, id, 'purchase', 1, 'x' FROM keen.credit_accounts$$,
                        md5(current_setting('test.request_b') || ':purchase')),
  '42501', NULL, '4: a tenant cannot insert a ledger row under the id of another tenant''s recharge purchase');

-- 5: times are the server's
SELECT throws_ok($$UPDATE keen.agent_sessions SET start_time = '-infinity', end_time = 'infinity'$$, '42501', NULL,
  '5: a tenant cannot set its sessions'' start_time or end_time');
SELECT throws_ok($$INSERT INTO keen.agent_sessions (user_id, session_id, git_branch, vision, working_directory, start_time)
                   VALUES (current_setting('test.a')::uuid, 'old', 'm', 'v', '/w', '-infinity')$$, '42501', NULL,
  '5: nor insert a session with a time of its choosing');

-- 6: no lock on a shared table
SELECT throws_ok($$LOCK TABLE keen.credit_accounts IN ACCESS EXCLUSIVE MODE$$, '42501', NULL,
  '6: a tenant cannot lock credit_accounts against every tenant');
SELECT throws_ok($$LOCK TABLE keen.agent_sessions IN SHARE MODE$$, '42501', NULL,
  '6: nor block every tenant''s session writes with a SHARE lock');
SELECT throws_ok($$LOCK TABLE keen.daily_usage_stats IN EXCLUSIVE MODE$$, '42501', NULL,
  '6: nor stall the stats every commit writes');
SELECT throws_ok($$SELECT FROM keen.credit_accounts FOR UPDATE$$, '42501', NULL,
  '6: nor hold row locks of its own outside the API (SELECT FOR UPDATE needs UPDATE)');

-- 7: the event-stream lock (the concurrency proof is tests_py/test_attacker.py)
SELECT hasnt_function('keen', 'lock_event_stream', ARRAY['uuid'],
  '7: there is no event-stream lock any more (migration 0013), so none a tenant could take');
SELECT throws_ok(format('SELECT FROM keen.users WHERE id = %L FOR NO KEY UPDATE', current_setting('test.b')), '42501', NULL,
  '7: nor lock the user row the stream lock now is');

-- 8: overflows answer with contract codes, at the call
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 99999999)$$, 'KE004', NULL,
  '8: a purchase past the balance ceiling raises KE004, not 22003');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 's-a', p_cost => 100000000)$$, 'KE004', NULL,
  '8: a session cost past its column raises KE004, not 22003 (a total past it could never be reserved: KE001 first)');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 's-a', p_tokens => 1000000000001)$$, 'KE013', NULL,
  '8: tokens past the per-session bound raise KE013 at the call (no 22003 at COMMIT from the stats)');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 's-a', p_iterations => 2147483647)
                   FROM keen.update_session_progress(p_session_id => 's-a', p_iterations => 2147483647)$$, 'KE013', NULL,
  '8: iterations past integer raise KE013, not 22003');
SELECT throws_ok($$SELECT keen.update_session_progress(p_session_id => 's-a', p_tool_calls => 2147483647)
                   FROM keen.update_session_progress(p_session_id => 's-a', p_tool_calls => 2147483647)$$, 'KE013', NULL,
  '8: tool calls past integer raise KE013, not 22003');

-- 9: malformed ids and dates, a context naming nobody
SELECT throws_ok($$SELECT keen.start_session(p_session_id => '', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE013', NULL, '9: an empty session id raises KE013, not 23514');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => repeat('s', 129), p_vision => 'v', p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE013', NULL, '9: an over-long session id raises KE013, not 23514');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => '', p_client_ip => '10.0.0.1')$$,
  'KE013', NULL, '9: an empty connection id raises KE013, not 23514');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => repeat('c', 256), p_client_ip => '10.0.0.1')$$,
  'KE013', NULL, '9: an over-long connection id raises KE013, not 23514');
SELECT throws_ok($$SELECT * FROM keen.usage_report('-infinity', 'infinity')$$,
  'KE013', NULL, '9: infinite report dates raise KE013, not 22008');
SELECT set_config('app.current_user_id', '00000000-0000-4000-8000-00000000dead', true);
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'x', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE010', NULL, '9: a context naming no user starts no session: KE010, not 23503');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'x', p_client_ip => '10.0.0.1')$$,
  'KE010', NULL, '9: nor opens a connection: KE010, not 23503');
SELECT set_config('app.current_user_id', current_setting('test.a'), true);

-- 10: bounded free text, short messages
SELECT throws_ok($$SELECT keen.register_user('big@atk.example', 'atk_big', repeat('h', 40), repeat('n', 1000000))$$,
  'KE013', NULL, '10: a megabyte display name at sign-up raises KE013');
SELECT ok(tap.error_of($$SELECT keen.register_user(repeat('e', 5000000) || '@atk.example', 'atk_e', repeat('h', 40))$$)
          ~ '^KE013 .{0,250}$',
  '10: a 5 MB e-mail is refused (KE013) with a message quoting only a short prefix');
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'big', p_vision => repeat('v', 1000000), p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE013', NULL, '10: a megabyte vision raises KE013');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1, p_description => repeat('d', 1000000))$$,
  'KE013', NULL, '10: a megabyte ledger description raises KE013');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1, p_description => repeat('d', 1000000))$$,
  'KE013', NULL, '10: a megabyte deduction description raises KE013');
SELECT throws_ok($$SELECT keen.add_credits(p_amount => 1, p_metadata => jsonb_build_object('x', repeat('m', 100000)))$$,
  'KE013', NULL, '10: oversized metadata raises KE013');
SELECT throws_ok($$SELECT keen.create_auth_token(p_token_type => 'api_key', p_token_hash => repeat('a', 64),
                                                 p_scopes => array_fill('s'::text, ARRAY[1000000]))$$,
  'KE013', NULL, '10: a million scopes raise KE013');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 's-a', p_success => false,
                                                p_files_created => array_fill('f'::text, ARRAY[100000]))$$,
  'KE013', NULL, '10: a hundred thousand file paths raise KE013');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'c-big', p_client_ip => '10.0.0.1', p_user_agent => repeat('u', 100000))$$,
  'KE013', NULL, '10: an oversized user agent raises KE013');
SELECT ok(tap.error_of(format('SELECT keen.get_session(%L)', repeat('s', 1000000))) ~ '^KE013 .{0,250}$',
  '10: an unknown megabyte session id is refused (KE013), not echoed into the error');

-- 11: NULL arguments name what is missing
SELECT throws_like($$SELECT keen.register_user(NULL, 'atk_n', repeat('h', 40))$$, '%e-mail is required%',
  '11: register_user with a NULL e-mail says the e-mail is required');
SELECT throws_like($$SELECT keen.register_user('n@atk.example', NULL, repeat('h', 40))$$, '%username is required%',
  '11: a NULL username says the username is required');
SELECT throws_ok($$SELECT keen.register_user('n@atk.example', 'atk_n', NULL)$$, 'KE013', NULL,
  '11: a NULL password hash raises KE013');

-- 12: payment intents are the tenant's own
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1, p_stripe_payment_intent_id => 'pi_victim_paid')$$,
  '12: another tenant''s used payment intent cannot be probed (it is simply A''s own, new purchase)');
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 1, p_stripe_payment_intent_id => 'pi_victim_next')$$,
  '12: A uses B''s next payment intent first ...');

-- 13: session filters name only the caller's sessions
SELECT throws_ok(format($$INSERT INTO keen.websocket_connections (user_id, connection_id, client_ip, client_type, session_filters)
                          VALUES (%L, 'c-evil', '10.0.0.1', 'web', ARRAY[%L]::uuid[])$$,
                        current_setting('test.a'), current_setting('test.session_b')),
  '42501', NULL, '13: a tenant cannot insert a connection filtering on another tenant''s session');
SELECT throws_ok($$SELECT keen.open_connection(p_connection_id => 'c-evil', p_client_ip => '10.0.0.1', p_session_filters => ARRAY['s-b'])$$,
  'KE006', NULL, '13: open_connection resolves filters among the caller''s sessions only');

-- 14: the connection list cannot be forged
SELECT throws_ok($$UPDATE keen.agent_sessions SET websocket_connections = ARRAY['ghost']$$, '42501', NULL,
  '14: a tenant cannot write agent_sessions.websocket_connections');
SELECT throws_ok($$CREATE TEMP TABLE forge (x integer)$$, '42501', NULL,
  '14: nor create the temp table whose trigger ran at depth 2');

-- 16: the hourly rate limit cannot be multiplied
SELECT throws_ok($$SELECT keen.create_auth_token(p_token_type => 'api_key', p_token_hash => repeat('b', 64),
                                                 p_rate_limit_per_hour => 1000000)$$,
  'KE013', NULL, '16: a token''s rate limit is capped (at most 10000 per hour)');
SELECT lives_ok($$SELECT keen.create_auth_token(p_token_type => 'api_key',
                                                p_token_hash => encode(sha256(convert_to('t' || i, 'UTF8')), 'hex'))
                  FROM generate_series(1, 100) AS i$$,
  '16: a user may hold 100 usable tokens ...');
SELECT throws_ok($$SELECT keen.create_auth_token(p_token_type => 'api_key', p_token_hash => repeat('c', 64))$$,
  'KE013', NULL, '16: ... and no more: minting keys does not multiply the limit');

-- 17: a malformed context fails closed
SELECT set_config('app.current_user_id', 'not-a-uuid', true);
SELECT is(keen.current_user_id(), NULL, '17: a malformed context is no tenant, not a raw 22P02');
SELECT is((SELECT count(*) FROM keen.agent_sessions), 0::bigint, '17: it sees no row');
SELECT throws_ok($$SELECT keen.deduct_credits(p_amount => 1)$$, 'KE010', NULL, '17: a tenant function raises KE010');
SELECT set_config('app.current_user_id', ' ' || current_setting('test.a') || ' ', true);
SELECT is(keen.current_user_id(), NULL, '17: a padded context is no tenant either');
SELECT set_config('app.current_user_id', '{' || current_setting('test.a') || '}', true);
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 'x', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE010', NULL, '17: a braced context is no tenant: KE010');
SELECT set_config('app.current_user_id', current_setting('test.a'), true);

-- 18: IANA zones only
SELECT throws_ok($$SELECT keen.register_user('tz1@atk.example', 'atk_tz1', repeat('h', 40), NULL, 'localtime')$$,
  'KE013', NULL, '18: localtime (the server''s own zone) is refused');
SELECT throws_ok($$SELECT keen.register_user('tz2@atk.example', 'atk_tz2', repeat('h', 40), NULL, 'Factory')$$,
  'KE013', NULL, '18: Factory is refused');
SELECT throws_ok($$SELECT keen.register_user('tz3@atk.example', 'atk_tz3', repeat('h', 40), NULL, 'posixrules')$$,
  'KE013', NULL, '18: posixrules is refused');
SELECT throws_ok($$SELECT keen.register_user('tz4@atk.example', 'atk_tz4', repeat('h', 40), NULL, 'posix/Europe/Paris')$$,
  'KE013', NULL, '18: the posix/ mirror tree is refused');
SELECT lives_ok($$SELECT keen.register_user('tz5@atk.example', 'atk_tz5', repeat('h', 40), NULL, 'Europe/Paris')$$,
  '18: an IANA zone is accepted');

-- 19: sign-up does not echo a taken identity
SELECT throws_ok($$SELECT keen.register_user('victim@atk.example', 'atk_other', repeat('h', 40))$$, 'KE009', NULL,
  '19: a taken e-mail raises KE009 ...');
SELECT ok(tap.error_of($$SELECT keen.register_user('victim@atk.example', 'atk_other', repeat('h', 40))$$) !~ 'victim',
  '19: ... without naming the e-mail');
SELECT ok(tap.error_of($$SELECT keen.register_user('other@atk.example', 'atk_b', repeat('h', 40))$$) !~ 'atk_b',
  '19: a taken username is not named either');

-- 20: a running session's cost and status are the API's
SELECT throws_ok($$UPDATE keen.agent_sessions SET total_cost = 0 WHERE session_id = 's-a'$$, '42501', NULL,
  '20: a tenant cannot lower its running session''s cost');
SELECT throws_ok($$UPDATE keen.agent_sessions SET execution_status = 'cancelled', end_time = now() WHERE session_id = 's-a'$$,
  '42501', NULL, '20: nor end it around complete_session');
SELECT throws_ok($$UPDATE keen.credit_accounts SET daily_limit = NULL, monthly_limit = NULL$$, '42501', NULL,
  '20: nor write its account around the credit functions');

-- 21: a suspended account starts nothing and completes nothing
RESET ROLE;
UPDATE keen.credit_accounts SET account_status = 'suspended', suspended_reason = 'chargeback'
 WHERE user_id = current_setting('test.a')::pg_catalog.uuid;
SET LOCAL ROLE keen_test_attacker;
SET LOCAL ROLE keen_app;
SELECT throws_ok($$SELECT keen.start_session(p_session_id => 's-a-2', p_vision => 'v', p_working_directory => '/w', p_git_branch => 'm')$$,
  'KE012', NULL, '21: a suspended account starts no session');
SELECT throws_ok($$SELECT keen.complete_session(p_session_id => 's-a', p_success => true, p_total_cost => 0)$$,
  'KE012', NULL, '21: nor completes one at cost 0');
SELECT lives_ok($$SELECT keen.cancel_session('s-a')$$, '21: it may still cancel, which charges nothing');

-- ===== the victim, afterwards (as B and as billing) ==========================
SELECT set_config('app.current_user_id', current_setting('test.b'), true);
SELECT lives_ok($$SELECT keen.add_credits(p_amount => 5, p_stripe_payment_intent_id => 'pi_victim_next')$$,
  '12: ... and B''s own purchase with it still goes through');
SELECT is((SELECT count(*) FROM keen.credit_transactions WHERE stripe_payment_intent_id LIKE 'pi_victim%'), 2::bigint,
  '12: B sees only its own two purchases');
RESET ROLE;
SELECT lives_ok(format('SELECT keen.complete_recharge_request(%L)', current_setting('test.request_b')),
  '4: billing completes B''s recharge');
SELECT isnt((SELECT purchase_transaction_id::text FROM keen.recharge_requests WHERE id = current_setting('test.request_b')::pg_catalog.uuid),
  md5(current_setting('test.request_b') || ':purchase')::pg_catalog.uuid::text,
  '4: the purchase id is random, not derived from the request id');
SELECT is((SELECT current_balance FROM keen.credit_accounts WHERE user_id = current_setting('test.b')::pg_catalog.uuid),
  115.0000::numeric, 'B was charged and credited exactly: 100 - 10 + 5 + 20');
SELECT is_empty($$SELECT * FROM keen.verify_ledger()$$, 'the ledger is consistent after every attack');
SELECT is((SELECT count(*) FROM tap.stolen WHERE role_name = 'keen_owner'), 0::bigint,
  '1: no temporary object ever ran as keen_owner');

SELECT * FROM finish();
ROLLBACK;
