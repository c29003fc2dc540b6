-- Undo 0011: the idle-transaction reaper and keen_owner's two predefined roles.
SET ROLE keen_owner;
DROP FUNCTION keen.end_idle_transactions(interval);
RESET ROLE;
REVOKE pg_read_all_stats, pg_signal_backend FROM keen_owner;
