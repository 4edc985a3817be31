"""`python -m rcmu_agent.testing --delay 0.2`: the loopback OpenAI-compatible server as its own process."""

from rcmu_agent.testing.openai_server import main

main()
