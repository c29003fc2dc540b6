-- Roll back 0003_sessions: agent sessions, their event log and connections, and their functions.
SET ROLE keen_owner;
DROP TABLE keen.websocket_connections;
DROP TABLE keen.session_events;
DROP TABLE keen.agent_sessions;
RESET ROLE;
