-- The settings `keen-sql citus distribute` runs distribute.sql under, in its transaction; one
-- statement a line (each is sent alone: Citus propagates a SET by sending the text of its
-- whole query to the workers).
-- Tables with triggers may be distributed (every trigger left touches only NEW and OLD).
SET LOCAL citus.enable_unsafe_triggers = on;
SET LOCAL citus.multi_shard_modify_mode = 'sequential';
-- Rows already there (a single-node deployment moving to Citus) are copied to the shards as
-- they are, and the coordinator's copies then removed: no trigger may fire on either (an
-- audit row, a stamp, the append-only tables' refusal of TRUNCATE). Replica mode keeps
-- ordinary triggers asleep, here and (propagated) on the workers' connections.
SET LOCAL citus.propagate_set_commands = 'local';
SET LOCAL session_replication_role = replica;
