-- rcmu's own database beside LangGraph Server's (`langgraph`, POSTGRES_DB): photo vault, library tables,
-- writers' advisory locks and the MCP/web replicas' threads. Run once, when the data volume is new.
CREATE DATABASE rcmu OWNER rcmu;
