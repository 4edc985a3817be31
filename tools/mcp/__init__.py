"""`rcmu mcp` (`rcmu_agent.tools.mcp`): the LangChain tools of `rcmu_agent.tools` served over the Model
Context Protocol.

`server` builds the MCP server (the tool list, resources, progress, per-token users); `_errors` words tool
errors for an MCP caller, `_prompts` holds the prompt menu, `_http` is the streamable HTTP app; `cli` is the
`rcmu mcp` command. Nothing is imported here: `rcmu` imports `cli` at every start, and the MCP SDK loads only
when the server runs.
"""
