"""LangChain tools over the agent (`rcmu_agent.tools`); see the issue "LangChain tools, multimodal RAG"."""
