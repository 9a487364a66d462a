-- Version 2: agents' last heartbeats, shared by the nodes of one database. A
-- heartbeat is not a change (no change log, no audit entry) and may be lost in a
-- crash; the node running the agent-health job reads every node's here.
CREATE TABLE agent_heartbeats (
    agent text COLLATE "C" PRIMARY KEY,
    at    timestamptz NOT NULL
);
